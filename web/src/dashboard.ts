/**
 * The Convoi calls dashboard (served by convoi-api at /dashboard).
 *
 * Sign in with an API key (kept in sessionStorage, sent only in the Authorization header). A
 * secret key lists the account's calls (GET /api/v1/public/calls, newest first, filters, "load
 * more" with the cursor) with live status, and opens one call (#/calls/<id>): GET
 * /calls/{id} (transcript, cost breakdown, per-turn latency) and GET /calls/{id}/events (webhook
 * deliveries). A publishable key may only watch a web call by its id: the page says so.
 *
 * Live: the visible view polls every 2 s while the tab is visible and pauses while it is hidden.
 * Page state is in data-* attributes (the browser test waits on them).
 */
import {
  ApiError,
  type Call,
  type CallPage,
  type Delivery,
  describe,
  getJson,
  TERMINAL,
  type TranscriptEntry,
  type TurnLatency,
} from './api';
import { type Datum, groupedBars, horizontalBars, type Series } from './charts';

const KEY_STORAGE = 'convoi.dashboard.key';
const POLL_MS = 2000;
const PAGE_SIZE = 20;

type View = 'signin' | 'pk' | 'list' | 'detail';

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing from the page`);
  return found as T;
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else if (name.startsWith('data-')) node.dataset[camel(name.slice(5))] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function showError(message: string | null): void {
  const box = el('error');
  box.textContent = message ?? '';
  box.hidden = !message;
}

const money = (v: number) => `$${v.toFixed(6)}`;
const seconds = (v: number) => `${v.toFixed(1)} s`;
const when = (iso: string) =>
  new Date(iso).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
const clock = (unix: number) => new Date(unix * 1000).toLocaleTimeString();

function pill(status: string): HTMLSpanElement {
  return h('span', { class: 'pill', 'data-status': status }, status.replace('_', ' '));
}

function who(call: Call): string {
  return call.squad_id ?? call.agent_id ?? '–';
}

// -- polling ------------------------------------------------------------------------------------

/** Runs ``tick`` now and every POLL_MS after it finishes, only while the tab is visible. */
class Poller {
  private timer: number | undefined;
  private running = false;
  private stopped = false;
  private readonly onVisibility = () => {
    this.show();
    if (document.visibilityState === 'visible') void this.run();
  };

  constructor(
    private readonly tick: () => Promise<boolean>, // false: nothing more to wait for
    private readonly badge: HTMLElement,
  ) {
    document.addEventListener('visibilitychange', this.onVisibility);
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    document.removeEventListener('visibilitychange', this.onVisibility);
  }

  private show(state?: string): void {
    const hidden = document.visibilityState !== 'visible';
    const s = this.stopped ? 'done' : hidden ? 'paused' : (state ?? 'live');
    this.badge.dataset.state = s;
    this.badge.textContent =
      s === 'done'
        ? 'final'
        : s === 'paused'
          ? 'paused (tab hidden)'
          : `live · updated ${new Date().toLocaleTimeString()}`;
  }

  private async run(): Promise<void> {
    if (this.running || this.stopped) return;
    window.clearTimeout(this.timer);
    if (document.visibilityState !== 'visible') return this.show();
    this.running = true;
    let more = true;
    try {
      more = await this.tick();
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (!more) {
      this.stop();
      return this.show();
    }
    this.show();
    this.timer = window.setTimeout(() => void this.run(), POLL_MS);
  }
}

// -- the session --------------------------------------------------------------------------------

let key: string | null = null;
let poller: Poller | null = null;

function isSecret(): boolean {
  return key?.startsWith('sk_live_') ?? false;
}

function setView(view: View): void {
  document.body.dataset.view = view;
  el('signin-form').hidden = view !== 'signin';
  el('pk-view').hidden = view !== 'pk';
  el('list-view').hidden = view !== 'list';
  el('detail-view').hidden = view !== 'detail';
  el('session').hidden = view === 'signin';
}

function stopPolling(): void {
  poller?.stop();
  poller = null;
}

/** A failed read: a refused key signs out; anything else is shown, and polling goes on. */
function onReadError(err: unknown): void {
  if (err instanceof ApiError && err.status === 401) {
    signOut(`The API refused the key (${describe(err)}). Sign in again.`);
    return;
  }
  showError(describe(err));
}

async function signIn(candidate: string): Promise<void> {
  if (!/^(sk|pk)_live_\S+$/.test(candidate)) {
    showError('An API key starts with sk_live_ (secret) or pk_live_ (publishable).');
    return;
  }
  try {
    if (candidate.startsWith('sk_live_')) {
      await getJson<CallPage>(candidate, '/calls?limit=1');
    } else {
      // a pk key cannot list: a read of a call that cannot exist tells a valid key (404) from
      // an unknown one (401)
      await getJson<Call>(candidate, '/calls/call_0').catch((err: unknown) => {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
      });
    }
  } catch (err) {
    showError(`Sign-in failed: ${describe(err)}`);
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, candidate);
  key = candidate;
  el<HTMLInputElement>('key').value = '';
  showError(null);
  el('key-kind').textContent = isSecret() ? 'secret key' : 'publishable key';
  el('key-kind').dataset.kind = isSecret() ? 'sk' : 'pk';
  route();
}

function signOut(message: string | null = null): void {
  stopPolling();
  sessionStorage.removeItem(KEY_STORAGE);
  key = null;
  history.replaceState(null, '', location.pathname); // the next key starts from its home view
  setView('signin');
  showError(message);
}

function route(): void {
  if (!key) return setView('signin');
  stopPolling();
  showError(null);
  const match = /^#\/calls\/([^/]+)$/.exec(location.hash);
  if (match) return openDetail(decodeURIComponent(match[1]));
  if (!isSecret()) return setView('pk');
  openList();
}

// -- the list -----------------------------------------------------------------------------------

const list = {
  calls: new Map<string, Call>(),
  cursor: null as string | null,
  loadedMore: false,
};

function listQuery(cursor: string | null): string {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const status = el<HTMLSelectElement>('filter-status').value;
  const type = el<HTMLSelectElement>('filter-type').value;
  if (status) params.set('status', status);
  if (type) params.set('type', type);
  if (cursor) params.set('cursor', cursor);
  return `/calls?${params}`;
}

function newestFirst(a: Call, b: Call): number {
  return b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id);
}

/** Bumped when the list is reopened (a filter changed): answers to older requests are dropped. */
let listGeneration = 0;

function openList(): void {
  setView('list');
  listGeneration += 1;
  list.calls.clear();
  list.cursor = null;
  list.loadedMore = false;
  renderList();
  poller = new Poller(refreshList, el('list-live'));
}

/** The first page again (new calls, new statuses), plus any live call further down. */
async function refreshList(): Promise<boolean> {
  const k = key;
  if (!k) return false;
  const generation = listGeneration;
  try {
    const page = await getJson<CallPage>(k, listQuery(null));
    if (generation !== listGeneration) return key !== null; // the filters changed meanwhile
    for (const call of page.data) list.calls.set(call.id, call);
    if (!list.loadedMore) list.cursor = page.next_cursor;
    const onPage = new Set(page.data.map((c) => c.id));
    const older = [...list.calls.values()].filter((c) => !onPage.has(c.id) && !TERMINAL.has(c.status));
    for (const call of older.slice(0, 10)) {
      const fresh = await getJson<Call>(k, `/calls/${encodeURIComponent(call.id)}`);
      if (generation !== listGeneration) return key !== null;
      list.calls.set(call.id, fresh);
    }
    showError(null);
  } catch (err) {
    onReadError(err);
  }
  renderList();
  return key !== null;
}

async function loadMore(): Promise<void> {
  if (!key || !list.cursor) return;
  const button = el<HTMLButtonElement>('load-more');
  button.disabled = true;
  const generation = listGeneration;
  try {
    const page = await getJson<CallPage>(key, listQuery(list.cursor));
    if (generation !== listGeneration) return;
    for (const call of page.data) list.calls.set(call.id, call);
    list.cursor = page.next_cursor;
    list.loadedMore = true;
    showError(null);
  } catch (err) {
    onReadError(err);
  } finally {
    button.disabled = false;
  }
  renderList();
}

function renderList(): void {
  const body = el('calls').querySelector('tbody');
  if (!body) return;
  const rows = [...list.calls.values()].sort(newestFirst).map((call) => {
    const link = h('a', { href: `#/calls/${encodeURIComponent(call.id)}` }, call.id);
    const row = h(
      'tr',
      { 'data-call-id': call.id, 'data-status': call.status },
      h('td', {}, pill(call.status)),
      h('td', { class: 'mono' }, link),
      h('td', {}, call.type === 'web' ? 'web' : 'phone'),
      h('td', { class: 'mono clip', title: who(call) }, who(call)),
      h('td', {}, when(call.created_at)),
      h('td', { class: 'num' }, seconds(call.duration_seconds)),
      h('td', { class: 'num' }, money(call.cost.amount)),
    );
    row.addEventListener('click', (e) => {
      if (!(e.target instanceof HTMLAnchorElement)) location.hash = link.getAttribute('href') ?? '';
    });
    return row;
  });
  body.replaceChildren(...rows);
  el('calls-empty').hidden = rows.length > 0;
  el('load-more').hidden = !list.cursor;
  el('calls').dataset.count = String(rows.length);
}

// -- one call -----------------------------------------------------------------------------------

function openDetail(callId: string): void {
  setView('detail');
  const view = el('detail-view');
  view.dataset.callId = callId;
  view.dataset.status = '';
  view.dataset.report = 'pending';
  el('d-id').textContent = callId;
  el('back').textContent = isSecret() ? '← all calls' : '← watch another call';
  el('d-limited').hidden = isSecret();
  el('d-full').hidden = !isSecret();
  for (const id of ['d-transcript', 'timeline', 'chart-cost-component', 'chart-cost-member',
    'chart-latency']) el(id).replaceChildren();
  poller = new Poller(() => refreshDetail(callId), el('detail-live'));
}

/** GET the call (and, with a secret key, its deliveries); false once nothing can change. */
async function refreshDetail(callId: string): Promise<boolean> {
  const k = key;
  if (!k) return false;
  const path = `/calls/${encodeURIComponent(callId)}`;
  try {
    const call = await getJson<Call>(k, path);
    const deliveries = isSecret() ? (await getJson<{ data: Delivery[] }>(k, `${path}/events`)).data : [];
    showError(null);
    renderDetail(call, deliveries);
    const settled = TERMINAL.has(call.status) && (!isSecret() || call.transcript != null);
    return !(settled && deliveries.every((d) => d.status !== 'pending'));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      showError(
        isSecret()
          ? `No call ${callId} on this account (404).`
          : `No web call ${callId} on this account (404): a publishable key sees web calls only.`,
      );
      return false;
    }
    onReadError(err);
    return key !== null;
  }
}

function renderDetail(call: Call, deliveries: Delivery[]): void {
  const view = el('detail-view');
  view.dataset.status = call.status;
  const status = el('d-status');
  status.dataset.status = call.status;
  status.textContent = call.status.replace('_', ' ');
  el('d-reason').textContent = call.ended_reason ? `ended: ${call.ended_reason}` : '';
  el('d-type').textContent =
    call.type === 'web' ? 'web call' : `phone call to ${call.customer?.number ?? '?'}`;
  el('d-agent').textContent = who(call);
  el('d-created').textContent = when(call.created_at);
  el('d-duration').textContent = seconds(call.duration_seconds);
  el('d-cost').textContent = `${money(call.cost.amount)} ${call.cost.currency}`;
  if (!isSecret()) return;
  renderTranscript(call);
  renderCost(call);
  renderLatency(call.latency ?? null);
  renderTimeline(call, deliveries);
  view.dataset.report = call.transcript != null ? 'ready' : 'pending';
}

function renderTranscript(call: Call): void {
  const list = el('d-transcript');
  const entries: TranscriptEntry[] = call.transcript ?? [];
  const start = Date.parse(call.created_at) / 1000;
  list.dataset.state = call.transcript == null ? 'pending' : 'ready';
  list.replaceChildren(
    ...entries.map((t) =>
      h(
        'li',
        { 'data-role': t.role, 'data-member': t.member ?? '' },
        h(
          'div',
          { class: 'meta' },
          h('span', { class: 'who' }, t.role === 'user' ? 'Caller' : 'Agent'),
          ...(t.member ? [h('span', { class: 'member', title: 'squad member' }, t.member)] : []),
          h('span', { class: 'at' }, `+${Math.max(t.at - start, 0).toFixed(1)} s`),
          ...(t.interrupted ? [h('span', { class: 'tag' }, 'interrupted')] : []),
          ...(t.source === 'dtmf' ? [h('span', { class: 'tag' }, 'keypad')] : []),
        ),
        h('p', { class: 'text' }, t.text),
      ),
    ),
  );
  const note = el('d-transcript-note');
  note.hidden = call.transcript != null && entries.length > 0;
  note.textContent =
    call.transcript == null
      ? 'The transcript arrives when the call has ended.'
      : 'Nothing was said in this call.';
}

function data(map: Record<string, number> | null | undefined): Datum[] {
  return Object.entries(map ?? {}).map(([label, value]) => ({ label, value }));
}

function renderCost(call: Call): void {
  el('chart-cost-component').replaceChildren(
    horizontalBars(data(call.cost.by_component), money, 'Cost by component (USD)'),
  );
  el('chart-cost-member').replaceChildren(
    horizontalBars(data(call.cost.by_member), money, 'Model cost by squad member (USD)'),
  );
}

const LATENCY_SERIES: [keyof TurnLatency, string][] = [
  ['e2e_latency', 'end to end'],
  ['end_of_turn_delay', 'end of turn'],
  ['llm_node_ttft', 'LLM first token'],
  ['tts_node_ttfb', 'TTS first byte'],
];

function renderLatency(turns: TurnLatency[] | null): void {
  const rows = turns ?? [];
  const members = new Set(rows.map((t) => t.member ?? ''));
  const categories = rows.map((t, i) => (members.size > 1 ? `T${i + 1} ${t.member}` : `T${i + 1}`));
  const series: Series[] = LATENCY_SERIES.map(([field, name]) => ({
    name,
    values: rows.map((t) => (typeof t[field] === 'number' ? (t[field] as number) : null)),
  })).filter((s) => s.values.some((v) => v !== null));
  el('chart-latency').replaceChildren(groupedBars(categories, series, 's', 'Latency per turn (s)'));
  const e2e = rows.map((t) => t.e2e_latency).filter((v): v is number => typeof v === 'number');
  const sorted = [...e2e].sort((a, b) => a - b);
  el('latency-summary').textContent =
    turns == null
      ? 'Per-turn latency arrives when the call has ended.'
      : sorted.length
        ? `${sorted.length} turn(s) · median end-to-end ${sorted[Math.floor((sorted.length - 1) / 2)].toFixed(2)} s · worst ${sorted[sorted.length - 1].toFixed(2)} s`
        : 'No agent turn after the caller spoke (no latency to show).';
}

function renderTimeline(call: Call, deliveries: Delivery[]): void {
  const items: { at: number; node: HTMLLIElement }[] = [];
  const add = (at: number, kind: string, ...children: (Node | string)[]) =>
    items.push({ at, node: h('li', { 'data-kind': kind }, h('time', {}, clock(at)), ...children) });
  add(Date.parse(call.created_at) / 1000, 'created', h('span', {}, 'call created'));
  for (const handoff of call.handoffs ?? []) {
    add(handoff.at, 'handoff', h('span', {}, `handoff ${handoff.from_member} → ${handoff.to_member}`),
      ...(handoff.reason ? [h('span', { class: 'muted' }, ` (${handoff.reason})`)] : []));
  }
  for (const d of deliveries) {
    const what = d.type === 'call.status'
      ? `${d.type}: ${d.payload.data?.previous ?? '–'} → ${d.payload.data?.status ?? '?'}`
      : d.type;
    const state = d.status === 'delivered'
      ? `delivered (${d.attempts} attempt${d.attempts === 1 ? '' : 's'})`
      : d.status === 'pending'
        ? `pending · ${d.attempts} attempt(s)${d.next_attempt_at ? ` · next ${new Date(d.next_attempt_at).toLocaleTimeString()}` : ''}`
        : d.status;
    const node = h('span', { class: 'delivery', 'data-status': d.status, title: d.url }, state);
    add(Date.parse(d.created_at) / 1000, 'delivery', h('span', { class: 'mono' }, what), node,
      ...(d.last_error ? [h('span', { class: 'error-text' }, ` last error: ${d.last_error}`)] : []));
  }
  items.sort((a, b) => a.at - b.at);
  const timeline = el('timeline');
  timeline.replaceChildren(...items.map((i) => i.node));
  timeline.dataset.deliveries = String(deliveries.length);
  timeline.dataset.pending = String(deliveries.filter((d) => d.status === 'pending').length);
  if (deliveries.length === 0) {
    timeline.append(h('li', { 'data-kind': 'note', class: 'muted' },
      'No webhook deliveries: no endpoint was registered for this account when the call ran.'));
  }
}

// -- start --------------------------------------------------------------------------------------

function main(): void {
  el<HTMLFormElement>('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void signIn(el<HTMLInputElement>('key').value.trim());
  });
  el('sign-out').addEventListener('click', () => signOut());
  el<HTMLFormElement>('watch-form').addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/calls/${encodeURIComponent(el<HTMLInputElement>('watch-id').value.trim())}`;
  });
  for (const id of ['filter-status', 'filter-type']) el(id).addEventListener('change', () => route());
  el('load-more').addEventListener('click', () => void loadMore());
  window.addEventListener('hashchange', () => route());
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) {
    key = stored;
    el('key-kind').textContent = isSecret() ? 'secret key' : 'publishable key';
    el('key-kind').dataset.kind = isSecret() ? 'sk' : 'pk';
  }
  route();
}

main();
