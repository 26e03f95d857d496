/**
 * The Convoi web-call demo page (served by convoi-api at /demo).
 *
 * 1. POST /api/v1/public/calls with the key from the form: a web call and its LiveKit token.
 * 2. Join the room with livekit-client: the agent's audio is attached and played, the microphone is
 *    published (on joining, or with the microphone button).
 * 3. The agent publishes transcriptions (its own speech and the caller's) as text streams on the
 *    `lk.transcription` topic: one line per segment (`lk.segment_id`).
 * 4. GET /api/v1/public/calls/{id} every second: status, duration, cost, ended reason.
 * 5. Hang up = leave the room; the worker sees the caller go and ends the call
 *    (completed / customer_hangup). Polling goes on until the status is terminal.
 */
import {
  type LocalTrackPublication,
  type Participant,
  type RemoteAudioTrack,
  type RemoteParticipant,
  type RemoteTrack,
  Room,
  RoomEvent,
  type TextStreamReader,
  Track,
} from 'livekit-client';

const CALLS_URL = '/api/v1/public/calls';
const TRANSCRIPTION_TOPIC = 'lk.transcription';
const ATTR_SEGMENT_ID = 'lk.segment_id';
const ATTR_FINAL = 'lk.transcription_final';
const ATTR_TRACK_ID = 'lk.transcribed_track_id';
const ATTR_AGENT_STATE = 'lk.agent.state';
const TERMINAL = new Set(['completed', 'busy', 'no_answer', 'failed', 'canceled']);
const POLL_INTERVAL_MS = 1000;

interface ApiError {
  error?: { code?: string; message?: string; field?: string | null };
}

interface CallBody {
  id: string;
  status: string;
  duration_seconds: number;
  cost: { amount: number; currency: string };
  ended_reason?: string | null;
  livekit?: { url: string; token?: string | null; participant_identity: string } | null;
}

type PageState = 'idle' | 'creating' | 'connecting' | 'connected' | 'left' | 'ended' | 'failed';

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing from the page`);
  return found as T;
}

function setPageState(state: PageState): void {
  document.body.dataset.state = state;
}

function showError(message: string | null): void {
  const box = el('error');
  box.textContent = message ?? '';
  box.hidden = !message;
}

function describeApiError(status: number, body: ApiError | null): string {
  const e = body?.error;
  if (!e) return `HTTP ${status}`;
  const field = e.field && !(e.message ?? '').includes(e.field) ? ` (${e.field})` : '';
  return `HTTP ${status} ${e.code ?? 'error'}: ${e.message ?? ''}${field}`;
}

async function readJson(resp: Response): Promise<unknown> {
  try {
    return await resp.json();
  } catch {
    return null;
  }
}

/** One call: the API resource, the LiveKit room, the transcript. */
class DemoCall {
  readonly room = new Room({ adaptiveStream: false, dynacast: false });
  private readonly lines = new Map<string, HTMLLIElement>();
  private readonly agentTracks = new Set<RemoteAudioTrack>();
  private pollTimer: number | undefined;
  private polling = true;
  private micOn = false;
  private micHeard = false; // the agent subscribed to our microphone track

  constructor(
    private readonly apiKey: string,
    private readonly call: CallBody,
  ) {
    this.wireRoomEvents();
    this.room.registerTextStreamHandler(TRANSCRIPTION_TOPIC, (reader, from) => {
      void this.onTranscription(reader, from.identity);
    });
  }

  async join(micOnJoin: boolean): Promise<void> {
    const lk = this.call.livekit;
    if (!lk?.url || !lk.token) throw new Error('the API returned no LiveKit url/token for this call');
    setPageState('connecting');
    el('room-state').textContent = 'connecting…';
    await this.room.connect(lk.url, lk.token);
    setPageState('connected');
    el('room-state').textContent = `connected as ${this.room.localParticipant.identity}`;
    el<HTMLButtonElement>('hangup').disabled = false;
    el<HTMLButtonElement>('mic-toggle').disabled = false;
    for (const p of this.room.remoteParticipants.values()) this.onParticipant(p);
    if (micOnJoin) await this.setMicrophone(true);
  }

  startPolling(): void {
    const tick = async () => {
      await this.refresh();
      await this.updateAgentAudio();
      if (this.polling) this.pollTimer = window.setTimeout(tick, POLL_INTERVAL_MS);
    };
    void tick();
  }

  async hangUp(): Promise<void> {
    el<HTMLButtonElement>('hangup').disabled = true;
    el('room-state').textContent = 'leaving…';
    await this.room.disconnect();
  }

  async setMicrophone(on: boolean): Promise<void> {
    const button = el<HTMLButtonElement>('mic-toggle');
    button.disabled = true;
    try {
      await this.room.localParticipant.setMicrophoneEnabled(on);
      this.micOn = on;
      this.showMic();
    } catch (err) {
      showError(`microphone: ${String(err)}`);
    } finally {
      button.disabled = this.room.state !== 'connected';
      button.textContent = this.micOn ? 'Turn microphone off' : 'Turn microphone on';
    }
  }

  toggleMicrophone(): Promise<void> {
    return this.setMicrophone(!this.micOn);
  }

  // -- room events --------------------------------------------------------------------------

  private wireRoomEvents(): void {
    const room = this.room;
    room
      .on(RoomEvent.ParticipantConnected, (p: RemoteParticipant) => this.onParticipant(p))
      .on(RoomEvent.ParticipantDisconnected, (p: RemoteParticipant) => {
        if (p.isAgent) el('agent-state').textContent = 'left the call';
      })
      .on(RoomEvent.ParticipantAttributesChanged, (_changed, p: Participant) => {
        if (p !== room.localParticipant) this.showAgentState(p);
      })
      .on(RoomEvent.TrackSubscribed, (track: RemoteTrack, _pub, p: RemoteParticipant) => {
        if (track.kind !== Track.Kind.Audio) return;
        const audio = track.attach();
        audio.dataset.participant = p.identity;
        el('audio-sink').appendChild(audio);
        this.agentTracks.add(track as RemoteAudioTrack);
        const state = el('agent-audio');
        state.dataset.state = 'subscribed';
        state.textContent = `subscribed (${p.identity})`;
      })
      .on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => {
        track.detach().forEach((e) => e.remove());
        this.agentTracks.delete(track as RemoteAudioTrack);
      })
      .on(RoomEvent.LocalTrackSubscribed, (pub: LocalTrackPublication) => {
        // may come before setMicrophoneEnabled() resolves
        if (pub.source === Track.Source.Microphone) {
          this.micHeard = true;
          this.showMic();
        }
      })
      .on(RoomEvent.AudioPlaybackStatusChanged, () => {
        el('enable-audio').hidden = room.canPlaybackAudio;
      })
      .on(RoomEvent.Disconnected, (reason) => {
        setPageState(TERMINAL.has(el('call-status').dataset.status ?? '') ? 'ended' : 'left');
        el('room-state').textContent = `left the room (${reason ?? 'disconnected'})`;
        el<HTMLButtonElement>('hangup').disabled = true;
        el<HTMLButtonElement>('mic-toggle').disabled = true;
        this.micOn = false;
        this.showMic();
      });
  }

  private onParticipant(p: RemoteParticipant): void {
    if (p.isAgent || p.attributes[ATTR_AGENT_STATE] !== undefined) this.showAgentState(p);
  }

  private showAgentState(p: Participant): void {
    const state = p.attributes[ATTR_AGENT_STATE];
    const agent = el('agent-state');
    agent.dataset.state = state ?? 'joined';
    agent.textContent = state ?? 'joined';
    agent.title = p.identity;
  }

  private showMic(): void {
    const mic = el('mic-state');
    const [state, text] = !this.micOn
      ? ['off', 'off']
      : this.micHeard
        ? ['heard', 'on · the agent hears you']
        : ['on', 'on'];
    mic.dataset.state = state;
    mic.textContent = text;
  }

  private async updateAgentAudio(): Promise<void> {
    let bytes = 0;
    let seconds = 0;
    for (const track of this.agentTracks) {
      const stats = await track.getReceiverStats().catch(() => undefined);
      bytes += stats?.bytesReceived ?? 0;
      seconds += stats?.totalSamplesDuration ?? 0;
    }
    if (bytes > 0) {
      const state = el('agent-audio');
      state.dataset.state = 'playing';
      state.dataset.bytes = String(bytes);
      state.textContent = `receiving · ${(bytes / 1024).toFixed(0)} kB · ${seconds.toFixed(1)} s played`;
    }
  }

  // -- transcript ---------------------------------------------------------------------------

  /** A transcription stream: agent speech arrives as deltas in one stream per segment; the
   *  caller's as one stream per update, each with the whole text so far. Both cases come down to
   *  "a segment shows the text accumulated in its latest stream". */
  private async onTranscription(reader: TextStreamReader, sender: string): Promise<void> {
    const attrs = reader.info.attributes ?? {};
    const segment = attrs[ATTR_SEGMENT_ID] ?? reader.info.id;
    const local = this.room.localParticipant;
    const fromCaller =
      sender === local.identity ||
      (attrs[ATTR_TRACK_ID] !== undefined && local.trackPublications.has(attrs[ATTR_TRACK_ID]));
    const final = attrs[ATTR_FINAL] === 'true';
    const line = this.line(segment, fromCaller ? 'caller' : 'agent');
    if (fromCaller && line.dataset.final === 'true' && !final) {
      await reader.readAll().catch(() => ''); // a late interim: the final text stays
      return;
    }
    let text = '';
    try {
      for await (const chunk of reader) {
        text += chunk;
        this.setLineText(line, text);
      }
    } catch (err) {
      console.warn('transcription stream ended early', err);
    }
    // agent segments are complete when their stream closes; caller updates say so in a header
    if (!fromCaller || final) line.dataset.final = 'true';
  }

  private line(segment: string, role: 'agent' | 'caller'): HTMLLIElement {
    let li = this.lines.get(segment);
    if (!li) {
      li = document.createElement('li');
      li.dataset.role = role;
      li.dataset.segment = segment;
      li.dataset.final = 'false';
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = role === 'agent' ? 'Agent' : 'You';
      const text = document.createElement('span');
      text.className = 'text';
      li.append(who, text);
      el('transcript').appendChild(li);
      this.lines.set(segment, li);
    }
    return li;
  }

  private setLineText(li: HTMLLIElement, text: string): void {
    const span = li.querySelector('.text');
    if (span) span.textContent = text.trim();
  }

  // -- the API resource ---------------------------------------------------------------------

  private async refresh(): Promise<void> {
    try {
      const resp = await fetch(`${CALLS_URL}/${encodeURIComponent(this.call.id)}`, {
        headers: { Authorization: `Bearer ${this.apiKey}` },
        cache: 'no-store',
      });
      const body = await readJson(resp);
      if (!resp.ok) {
        showError(`GET call: ${describeApiError(resp.status, body as ApiError | null)}`);
        return;
      }
      this.showCall(body as CallBody);
    } catch (err) {
      showError(`GET call: ${String(err)}`); // transient: keep polling
    }
  }

  showCall(call: CallBody): void {
    const status = el('call-status');
    status.dataset.status = call.status;
    status.textContent = call.status;
    el('call-id').textContent = call.id;
    el('call-duration').textContent = `${call.duration_seconds.toFixed(1)} s`;
    el('call-cost').textContent = `${call.cost.amount.toFixed(6)} ${call.cost.currency}`;
    const reason = el('ended-reason');
    reason.dataset.reason = call.ended_reason ?? '';
    reason.textContent = call.ended_reason ? `ended: ${call.ended_reason}` : '';
    if (TERMINAL.has(call.status)) {
      this.polling = false;
      window.clearTimeout(this.pollTimer);
      el('new-call').hidden = false;
      if (this.room.state === 'disconnected') setPageState('ended');
      else void this.room.disconnect(); // the call is over (e.g. the agent hung up)
    }
  }
}

async function createCall(apiKey: string, agentId: string, name: string): Promise<CallBody> {
  const body: Record<string, unknown> = { type: 'web', agent_id: agentId };
  if (name) body.participant_name = name;
  const resp = await fetch(CALLS_URL, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${apiKey}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': crypto.randomUUID(),
    },
    body: JSON.stringify(body),
  });
  const json = await readJson(resp);
  if (resp.status !== 201) throw new Error(describeApiError(resp.status, json as ApiError | null));
  return json as CallBody;
}

let current: DemoCall | null = null;

async function onSubmit(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  if (current) return;
  showError(null);
  const form = el<HTMLFormElement>('call-form');
  const fields = form.querySelectorAll<HTMLInputElement | HTMLButtonElement>('input, button');
  fields.forEach((f) => (f.disabled = true));
  setPageState('creating');
  const apiKey = el<HTMLInputElement>('api-key').value.trim();
  const agentId = el<HTMLInputElement>('agent-id').value.trim();
  const name = el<HTMLInputElement>('participant-name').value.trim();
  try {
    const call = await createCall(apiKey, agentId, name);
    form.hidden = true;
    el('call-summary').innerHTML = '';
    el('call-summary').append(
      'Web call with ',
      Object.assign(document.createElement('code'), { textContent: agentId }),
      ...(name ? [' as ', name] : []),
    );
    el('call').hidden = false;
    current = new DemoCall(apiKey, call);
    void current.room.startAudio(); // inside the click: lets the agent's audio play
    current.showCall(call);
    current.startPolling();
    await current.join(el<HTMLInputElement>('mic-on-join').checked);
  } catch (err) {
    setPageState('failed');
    showError(err instanceof Error ? err.message : String(err));
    if (!current) {
      fields.forEach((f) => (f.disabled = false));
      setPageState('idle');
    }
  }
}

function main(): void {
  const params = new URLSearchParams(location.search);
  const prefill: Record<string, string> = { agent_id: 'agent-id', name: 'participant-name' };
  for (const [param, id] of Object.entries(prefill)) {
    const value = params.get(param);
    if (value) el<HTMLInputElement>(id).value = value;
  }
  el<HTMLFormElement>('call-form').addEventListener('submit', (e) => void onSubmit(e));
  el('hangup').addEventListener('click', () => void current?.hangUp());
  el('mic-toggle').addEventListener('click', () => void current?.toggleMicrophone());
  el('enable-audio').addEventListener('click', () => void current?.room.startAudio());
  el('new-call').addEventListener('click', () => location.reload());
  if (!window.isSecureContext) {
    showError('This page is not a secure context (use https or localhost): no microphone.');
  }
}

main();
