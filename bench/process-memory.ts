import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { MEDIA_NODE_ENTRY } from '../scripts/build-media-node.ts';

/**
 * Memory of the processes a benchmark started (the stack's children and theirs), read from /proc:
 * RSS by kind of process, and the machine's load average to put the figures in context.
 */

/** Processes below this one (the stack's children, their children…), with their command lines. */
function descendants(): { pid: number; command: string }[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parents.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // The process ended meanwhile.
    }
  }
  const isBelow = (pid: number): boolean => {
    for (let parent = parents.get(pid); parent !== undefined && parent > 1; parent = parents.get(parent)) {
      if (parent === process.pid) return true;
    }
    return false;
  };
  return [...parents.keys()].filter(isBelow).flatMap((pid) => {
    try {
      return [{ pid, command: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ') }];
    } catch {
      return [];
    }
  });
}

function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Math.round(Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024);
  } catch {
    return 0;
  }
}

/** The inode of the socket listening on a loopback TCP port (IPv4), from /proc/net/tcp. */
function listeningInode(port: number): string | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    // local_address is HEXIP:HEXPORT; state 0A is LISTEN; the inode is the 10th field.
    if (fields[1]?.endsWith(`:${hexPort}`) && fields[3] === '0A') return fields[9];
  }
  return undefined;
}

function holdsSocket(pid: number, inode: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/**
 * RSS in MB of the media node and of workerd. `wrangler dev` runs two workerd processes: wrangler's
 * own proxy (it listens on the dev port and passes every request and WebSocket on, a tool of local
 * development only) and the runtime of the Worker and its Durable Objects. Both are summed in
 * `workerd_mb`, and told apart by who listens on `edgePort`.
 */
export function stackMemory(edgePort: number) {
  const processes = descendants();
  const workerd = processes.filter((p) => /(^|\/)workerd /.test(p.command));
  const inode = listeningInode(edgePort);
  const proxy = inode === undefined ? [] : workerd.filter((p) => holdsSocket(p.pid, inode));
  const sum = (list: { pid: number }[]) => list.reduce((total, p) => total + rssMb(p.pid), 0);
  return {
    media_node_mb: sum(processes.filter((p) => p.command.includes(MEDIA_NODE_ENTRY))),
    workerd_mb: sum(workerd),
    workerd_runtime_mb: sum(workerd.filter((p) => !proxy.includes(p))),
    wrangler_proxy_mb: sum(proxy),
  };
}

/** The 1, 5 and 15 minute load averages: the machine may be shared, and figures mean less under load. */
export function loadAverage(): [number, number, number] {
  const [one, five, fifteen] = readFileSync('/proc/loadavg', 'utf8').split(' ').map(Number);
  return [one ?? 0, five ?? 0, fifteen ?? 0];
}
