import {
  type ActiveSpeaker,
  type RemoteTrack,
  SignalingError,
  type StreamKind,
  TrueGatherClient,
} from '../src/index.ts';
import { TileQuality } from './tile-quality.ts';

/**
 * The demo page: create or join a room by link, camera and microphone toggles (the room's mute, so
 * everyone sees the badge), one tile per participant who publishes, the speaking tiles highlighted, a
 * chat panel (`send_data`, topic `chat`), and for the room's creator host controls: mute and remove
 * per tile, end the meeting. Each remote tile asks for the video layer its size needs, pauses while off
 * screen, and shows what it receives on the stats toggle (tile-quality.ts). Built from the SDK only.
 */
const $ = <T extends Element>(selector: string) => document.querySelector<T>(selector)!;

const lobby = $<HTMLElement>('[data-testid=lobby]');
const call = $<HTMLElement>('[data-testid=call]');
const tiles = $<HTMLElement>('[data-testid=tiles]');
const status = $<HTMLElement>('[data-testid=status]');
const lobbyError = $<HTMLElement>('[data-testid=lobby-error]');
const roomTitle = $<HTMLElement>('[data-testid=room-title]');
const createForm = $<HTMLFormElement>('[data-testid=create-form]');
const joinForm = $<HTMLFormElement>('[data-testid=join-form]');
const chatForm = $<HTMLFormElement>('[data-testid=chat-form]');
const chatMessages = $<HTMLOListElement>('[data-testid=chat-messages]');
const endMeeting = $<HTMLButtonElement>('[data-testid=end-meeting]');
const tileTemplate = $<HTMLTemplateElement>('#tile-template');

/** The chat's topic on `send_data`: other apps' data in the same room is not shown as chat. */
const CHAT_TOPIC = 'chat';

const baseUrl = window.location.origin;
let client: TrueGatherClient | undefined;
/** The remote tiles' layer requests and stats overlay, for the current client. */
let quality: TileQuality | undefined;
let localStream: MediaStream | undefined;
/**
 * The admin tokens of the rooms this page created (POST /api/v1/rooms answers it to the creator
 * only). Kept in memory, never stored: joining one of these rooms makes this page its host.
 */
const createdRooms = new Map<string, string>();
/** Participants whose microphone is under this host's lock. */
const lockedMics = new Set<string>();
/** Who speaks now (the last `activeSpeakers`): a tile created later starts highlighted. */
let speaking = new Set<string>();

/** A room link is `/?room=<id>`; the join form takes a link or a bare id. */
function roomIdFrom(input: string): string {
  const trimmed = input.trim();
  try {
    return new URL(trimmed).searchParams.get('room') ?? trimmed;
  } catch {
    return trimmed;
  }
}

function inviteLink(roomId: string): string {
  return `${baseUrl}/?room=${encodeURIComponent(roomId)}`;
}

async function apiError(response: Response): Promise<string> {
  const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
  return body.error?.message ?? `HTTP ${response.status}`;
}

function displayOf(id: string): string {
  return client?.publishers.get(id)?.display ?? client?.participants.get(id)?.display ?? '…';
}

function findTile(id: string): HTMLElement | null {
  return tiles.querySelector<HTMLElement>(`[data-participant="${CSS.escape(id)}"]`);
}

function tileFor(id: string, name: string, local = false): HTMLElement {
  const existing = findTile(id);
  if (existing) return existing;
  const tile = (tileTemplate.content.firstElementChild as HTMLElement).cloneNode(true) as HTMLElement;
  tile.dataset.participant = id;
  tile.dataset.testid = local ? 'tile-local' : 'tile-remote';
  tile.classList.toggle('local', local);
  tile.classList.toggle('speaking', speaking.has(id));
  (tile.querySelector('.name') as HTMLElement).textContent = local ? `${name} (you)` : name;
  const video = tile.querySelector('video') as HTMLVideoElement;
  video.muted = local;
  if (!local && client && createdRooms.has(client.roomId)) bindHostControls(tile, id);
  for (const stream of client?.publishers.get(id)?.streams ?? [])
    showMuted(id, stream.kind, stream.muted === true, tile);
  tiles.append(tile);
  if (!local) quality?.watch(id, tile);
  return tile;
}

function showRemoteTrack({ publisherId, track, stream }: RemoteTrack): void {
  const video = tileFor(publisherId, displayOf(publisherId)).querySelector('video') as HTMLVideoElement;
  quality?.trackReceived(publisherId, track);
  if (video.srcObject !== stream) video.srcObject = stream;
}

function removeTile(id: string): void {
  const tile = findTile(id);
  if (!tile) return;
  quality?.unwatch(tile);
  tile.remove();
}

/** The tile's mute badge for `kind`; the local toggles follow this participant's own state (an admin's mute too). */
function showMuted(id: string, kind: StreamKind, muted: boolean, tile = findTile(id)): void {
  const badge = tile?.querySelector<HTMLElement>(`[data-testid=badge-${kind}]`);
  if (badge) badge.hidden = !muted;
  if (client?.participantId === id) setToggle(kind === 'audio' ? micToggle : cameraToggle, !muted);
}

/** Highlights the tiles of who speaks now (this participant's own included), from `activeSpeakers`. */
function showSpeakers(speakers: ActiveSpeaker[]): void {
  speaking = new Set(speakers.map((speaker) => speaker.participantId));
  for (const tile of tiles.querySelectorAll<HTMLElement>('[data-participant]')) {
    tile.classList.toggle('speaking', speaking.has(tile.dataset.participant ?? ''));
  }
}

/** Host controls on another participant's tile: lock or unlock their microphone, remove them. */
function bindHostControls(tile: HTMLElement, id: string): void {
  const controls = tile.querySelector('.host-controls') as HTMLElement;
  const mute = controls.querySelector('[data-testid=host-mute]') as HTMLButtonElement;
  controls.hidden = false;
  mute.textContent = lockedMics.has(id) ? 'Unlock mic' : 'Mute';
  mute.addEventListener('click', () => {
    // Lifting the lock does not unmute anyone: the participant unmutes themselves.
    void client?.admin.muteParticipant(id, 'audio', !lockedMics.has(id)).catch(showError);
  });
  (controls.querySelector('[data-testid=host-remove]') as HTMLButtonElement).addEventListener('click', () => {
    void client?.admin.removeParticipant(id).catch(showError);
  });
}

function showLock(id: string, locked: boolean): void {
  if (locked) lockedMics.add(id);
  else lockedMics.delete(id);
  const mute = findTile(id)?.querySelector<HTMLButtonElement>('[data-testid=host-mute]');
  if (mute) mute.textContent = locked ? 'Unlock mic' : 'Mute';
}

function appendChat(from: string, text: string): void {
  const item = document.createElement('li');
  const author = document.createElement('span');
  author.className = 'from';
  author.textContent = from;
  item.append(author, text);
  chatMessages.append(item);
  item.scrollIntoView({ block: 'end' });
}

function showError(error: unknown): void {
  status.textContent = error instanceof Error ? error.message : String(error);
}

/** A tile's layer request can cross its publisher leaving (`unknown_feed`): that tile is going away, nothing to show. */
function showQualityError(error: unknown): void {
  if (!(error instanceof SignalingError && error.code === 'unknown_feed')) showError(error);
}

async function enterRoom(roomId: string, display: string): Promise<void> {
  lobbyError.textContent = '';
  const roomResponse = await fetch(`${baseUrl}/api/v1/rooms/${encodeURIComponent(roomId)}`);
  if (!roomResponse.ok) throw new Error(await apiError(roomResponse));
  const room = (await roomResponse.json()) as { name: string };

  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  const adminToken = createdRooms.get(roomId);
  const session = new TrueGatherClient({
    baseUrl,
    roomId,
    display,
    ...(adminToken ? { grants: { admin: true }, adminCredential: adminToken } : {}),
  });
  client = session;
  quality?.close();
  quality = new TileQuality(session, showQualityError);
  quality.showStats(statsToggle.getAttribute('aria-pressed') === 'true');
  session.on('track', showRemoteTrack);
  session.on('publisher_left', ({ publisherId }) => removeTile(publisherId));
  session.on('participant_left', ({ id }) => removeTile(id));
  session.on('track_muted', ({ publisherId, kind, muted, locked }) => {
    showMuted(publisherId, kind, muted);
    if (kind === 'audio') showLock(publisherId, locked);
  });
  session.on('layer_changed', ({ publisherId, rid, width, height }) =>
    quality?.layerChanged(publisherId, rid, width, height),
  );
  session.on('activeSpeakers', ({ speakers }) => showSpeakers(speakers));
  session.on('data', ({ from, data, topic }) => {
    if (topic === CHAT_TOPIC) appendChat(displayOf(from), data);
  });
  session.on('state', (state) => {
    status.textContent = state === 'open' ? 'Connected' : state === 'reconnecting' ? 'Reconnecting…' : state;
    // Closed by the server: the host removed this participant or ended the meeting.
    if (state === 'closed' && client === session) leaveRoom('The call has ended');
  });
  session.on('error', showError);
  await session.join();
  history.replaceState(null, '', inviteLink(roomId));
  roomTitle.textContent = room.name;
  lobby.hidden = true;
  call.hidden = false;
  endMeeting.hidden = !adminToken;
  (tileFor(session.participantId, display, true).querySelector('video') as HTMLVideoElement).srcObject = localStream;
  status.textContent = 'Connected';
  await session.publish(localStream);
}

function leaveRoom(message = 'Left the room'): void {
  const leaving = client;
  client = undefined;
  quality?.close();
  quality = undefined;
  for (const track of localStream?.getTracks() ?? []) track.stop();
  localStream = undefined;
  tiles.replaceChildren();
  chatMessages.replaceChildren();
  lockedMics.clear();
  speaking = new Set();
  for (const toggle of [micToggle, cameraToggle]) setToggle(toggle, true);
  call.hidden = true;
  lobby.hidden = false;
  status.textContent = message;
  if (leaving && leaving.state !== 'closed') void leaving.leave().catch(() => undefined);
}

interface Toggle {
  button: HTMLButtonElement;
  kind: StreamKind;
  label: string;
}

const cameraToggle: Toggle = { button: $('[data-testid=toggle-camera]'), kind: 'video', label: 'Camera' };
const micToggle: Toggle = { button: $('[data-testid=toggle-mic]'), kind: 'audio', label: 'Mic' };
const statsToggle = $<HTMLButtonElement>('[data-testid=toggle-stats]');

function setToggle({ button, label }: Toggle, on: boolean): void {
  button.setAttribute('aria-pressed', String(on));
  button.textContent = `${label} ${on ? 'on' : 'off'}`;
}

/** Mutes through the room (the server stops forwarding, everyone sees the badge); the button follows track_muted. */
function bindToggle(toggle: Toggle): void {
  toggle.button.addEventListener('click', () => {
    if (!client) return;
    const on = toggle.button.getAttribute('aria-pressed') !== 'true';
    const change = on ? client.unmute(toggle.kind) : client.mute(toggle.kind);
    change.catch((error) => {
      const locked = error instanceof SignalingError && error.code === 'forbidden';
      showError(locked ? 'The host muted you: only the host can lift it' : error);
    });
  });
}

async function withBusy(form: HTMLFormElement, action: () => Promise<void>): Promise<void> {
  const button = form.querySelector('button') as HTMLButtonElement;
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    lobbyError.textContent = error instanceof Error ? error.message : String(error);
  } finally {
    button.disabled = false;
  }
}

createForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void withBusy(createForm, async () => {
    const name = String(new FormData(createForm).get('name'));
    const response = await fetch(`${baseUrl}/api/v1/rooms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    if (!response.ok) throw new Error(await apiError(response));
    const room = (await response.json()) as { id: string; admin_token: string };
    createdRooms.set(room.id, room.admin_token);
    (joinForm.elements.namedItem('room') as HTMLInputElement).value = inviteLink(room.id);
    (joinForm.elements.namedItem('display') as HTMLInputElement).focus();
  });
});

joinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void withBusy(joinForm, async () => {
    const data = new FormData(joinForm);
    await enterRoom(roomIdFrom(String(data.get('room'))), String(data.get('display')));
  });
});

chatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const input = chatForm.elements.namedItem('message') as HTMLInputElement;
  const text = input.value.trim();
  const sender = client;
  if (!text || !sender) return;
  // The server never echoes a sender's own message: it is shown once the server accepted it.
  sender
    .sendData(text, { topic: CHAT_TOPIC })
    .then(() => {
      appendChat(`${sender.display} (you)`, text);
      input.value = '';
    })
    .catch(showError);
});

$<HTMLButtonElement>('[data-testid=leave]').addEventListener('click', () => leaveRoom());
endMeeting.addEventListener('click', () => {
  void client?.admin.deleteRoom().catch(showError);
});
$<HTMLButtonElement>('[data-testid=copy-link]').addEventListener('click', () => {
  if (client) void navigator.clipboard?.writeText(inviteLink(client.roomId));
});
bindToggle(cameraToggle);
bindToggle(micToggle);
statsToggle.addEventListener('click', () => {
  const on = statsToggle.getAttribute('aria-pressed') !== 'true';
  statsToggle.setAttribute('aria-pressed', String(on));
  quality?.showStats(on);
});

const linkedRoom = new URLSearchParams(window.location.search).get('room');
if (linkedRoom) {
  (joinForm.elements.namedItem('room') as HTMLInputElement).value = inviteLink(linkedRoom);
  $<HTMLElement>('[data-testid=join-heading]').textContent = 'You are invited';
  createForm.hidden = true;
}

/** For tests and debugging in the console: the live client, to read getStats(). */
Object.defineProperty(window, 'truegather', { get: () => client });
