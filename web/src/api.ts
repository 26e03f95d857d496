/**
 * The public Calls API as the dashboard reads it: the key the user signed in with, in the
 * Authorization header (never in a URL), and errors as values a page can show plainly.
 */

export const API = '/api/v1/public';
export const TERMINAL = new Set(['completed', 'busy', 'no_answer', 'failed', 'canceled']);

export interface Cost {
  amount: number;
  currency: string;
  by_component?: Record<string, number> | null;
  by_member?: Record<string, number> | null;
  unpriced?: string[] | null;
}

export interface TranscriptEntry {
  role: 'user' | 'assistant';
  text: string;
  at: number;
  member?: string | null;
  interrupted?: boolean;
  source?: 'voice' | 'dtmf';
}

export interface Handoff {
  from_member: string;
  to_member: string;
  reason?: string | null;
  at: number;
}

export interface TurnLatency {
  member?: string | null;
  e2e_latency?: number | null;
  transcription_delay?: number | null;
  end_of_turn_delay?: number | null;
  llm_node_ttft?: number | null;
  tts_node_ttfb?: number | null;
  retrieval_seconds?: number | null;
}

export interface Call {
  id: string;
  type: 'web' | 'outbound_phone';
  status: string;
  agent_id: string | null;
  squad_id?: string | null;
  customer?: { number: string } | null;
  duration_seconds: number;
  cost: Cost;
  created_at: string;
  updated_at: string;
  ended_reason?: string | null;
  fault?: string | null;
  detail?: string | null;
  transcript?: TranscriptEntry[] | null;
  handoffs?: Handoff[] | null;
  latency?: TurnLatency[] | null;
}

export interface CallPage {
  data: Call[];
  next_cursor: string | null;
}

export interface Delivery {
  id: string;
  type: string;
  endpoint_id: string;
  url: string;
  status: 'pending' | 'delivered' | 'failed' | 'canceled';
  attempts: number;
  last_error: string | null;
  last_status_code: number | null;
  next_attempt_at: string | null;
  created_at: string;
  delivered_at: string | null;
  payload: { data?: { status?: string; previous?: string | null } };
}

/** An answer other than 2xx: HTTP status and the API's error code and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The API did not answer (offline, server down, connection reset). */
export class NetworkError extends Error {}

/** GET ``path`` (under /api/v1/public) with ``key``; throws ApiError or NetworkError. */
export async function getJson<T>(key: string, path: string): Promise<T> {
  let resp: Response;
  try {
    resp = await fetch(`${API}${path}`, {
      headers: { Authorization: `Bearer ${key}` },
      cache: 'no-store',
    });
  } catch (err) {
    throw new NetworkError(`the API did not answer (${String(err)})`);
  }
  const body = (await resp.json().catch(() => null)) as
    | { error?: { code?: string; message?: string } }
    | null;
  if (!resp.ok) {
    const e = body?.error;
    throw new ApiError(resp.status, e?.code ?? 'error', e?.message ?? resp.statusText);
  }
  return body as T;
}

/** What to show for an error, in one line. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) return `HTTP ${err.status} ${err.code}: ${err.message}`;
  if (err instanceof NetworkError) return `Network error: ${err.message}. Retrying.`;
  return err instanceof Error ? err.message : String(err);
}
