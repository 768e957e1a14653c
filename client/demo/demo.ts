import { type RemoteTrack, TrueGatherClient } from '../src/index.ts';

/**
 * The demo page: create or join a room by link, camera and microphone toggles, one tile per
 * participant who publishes, leave. Built from the SDK only.
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
const tileTemplate = $<HTMLTemplateElement>('#tile-template');

const baseUrl = window.location.origin;
let client: TrueGatherClient | undefined;
let localStream: MediaStream | undefined;

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

function tileFor(id: string, name: string, local = false): HTMLElement {
  const existing = tiles.querySelector<HTMLElement>(`[data-participant="${CSS.escape(id)}"]`);
  if (existing) return existing;
  const tile = (tileTemplate.content.firstElementChild as HTMLElement).cloneNode(true) as HTMLElement;
  tile.dataset.participant = id;
  tile.dataset.testid = local ? 'tile-local' : 'tile-remote';
  tile.classList.toggle('local', local);
  (tile.querySelector('.name') as HTMLElement).textContent = local ? `${name} (you)` : name;
  const video = tile.querySelector('video') as HTMLVideoElement;
  video.muted = local;
  tiles.append(tile);
  return tile;
}

function showRemoteTrack({ publisherId, stream }: RemoteTrack): void {
  const name = client?.publishers.get(publisherId)?.display ?? client?.participants.get(publisherId)?.display ?? '…';
  const video = tileFor(publisherId, name).querySelector('video') as HTMLVideoElement;
  if (video.srcObject !== stream) video.srcObject = stream;
}

function removeTile(id: string): void {
  tiles.querySelector(`[data-participant="${CSS.escape(id)}"]`)?.remove();
}

async function enterRoom(roomId: string, display: string): Promise<void> {
  lobbyError.textContent = '';
  const roomResponse = await fetch(`${baseUrl}/api/v1/rooms/${encodeURIComponent(roomId)}`);
  if (!roomResponse.ok) throw new Error(await apiError(roomResponse));
  const room = (await roomResponse.json()) as { name: string };

  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  client = new TrueGatherClient({ baseUrl, roomId, display });
  client.on('track', showRemoteTrack);
  client.on('publisher_left', ({ publisherId }) => removeTile(publisherId));
  client.on('participant_left', ({ id }) => removeTile(id));
  client.on('state', (state) => {
    status.textContent = state === 'open' ? 'Connected' : state === 'reconnecting' ? 'Reconnecting…' : state;
    if (state === 'closed') leaveRoom();
  });
  client.on('error', (error) => {
    status.textContent = error.message;
  });
  await client.join();
  history.replaceState(null, '', inviteLink(roomId));
  roomTitle.textContent = room.name;
  lobby.hidden = true;
  call.hidden = false;
  (tileFor(client.participantId, display, true).querySelector('video') as HTMLVideoElement).srcObject = localStream;
  status.textContent = 'Connected';
  await client.publish(localStream);
}

function leaveRoom(): void {
  const leaving = client;
  client = undefined;
  for (const track of localStream?.getTracks() ?? []) track.stop();
  localStream = undefined;
  tiles.replaceChildren();
  call.hidden = true;
  lobby.hidden = false;
  status.textContent = 'Left the room';
  if (leaving && leaving.state !== 'closed') void leaving.leave().catch(() => undefined);
}

function bindToggle(testid: string, kind: 'video' | 'audio', label: string): void {
  const button = $<HTMLButtonElement>(`[data-testid=${testid}]`);
  button.addEventListener('click', () => {
    const on = button.getAttribute('aria-pressed') !== 'true';
    for (const track of localStream?.getTracks() ?? []) if (track.kind === kind) track.enabled = on;
    button.setAttribute('aria-pressed', String(on));
    button.textContent = `${label} ${on ? 'on' : 'off'}`;
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
    const room = (await response.json()) as { id: string };
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

$<HTMLButtonElement>('[data-testid=leave]').addEventListener('click', leaveRoom);
$<HTMLButtonElement>('[data-testid=copy-link]').addEventListener('click', () => {
  if (client) void navigator.clipboard?.writeText(inviteLink(client.roomId));
});
bindToggle('toggle-camera', 'video', 'Camera');
bindToggle('toggle-mic', 'audio', 'Mic');

const linkedRoom = new URLSearchParams(window.location.search).get('room');
if (linkedRoom) {
  (joinForm.elements.namedItem('room') as HTMLInputElement).value = inviteLink(linkedRoom);
  $<HTMLElement>('[data-testid=join-heading]').textContent = 'You are invited';
  createForm.hidden = true;
}

/** For tests and debugging in the console: the live client, to read getStats(). */
Object.defineProperty(window, 'truegather', { get: () => client });
