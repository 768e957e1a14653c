import { execFileSync } from 'node:child_process';
import { findExecutable } from './required-tools.ts';

/**
 * A network namespace joined to this one by a veth pair, whose host side can be throttled with `tc`: a viewer run inside the namespace has a really limited downlink. Needs root and
 * iproute2; `limitedLinkTool` is undefined without them (REQUIRE_NETNS=1 makes that a failure).
 */
export const limitedLinkTool: string | undefined =
  process.getuid?.() === 0 ? findExecutable('ip', '/usr/sbin/ip', '/sbin/ip') : undefined;
const tcTool = findExecutable('tc', '/usr/sbin/tc', '/sbin/tc');

export class LimitedLink {
  /** The namespace's name, for `ip netns exec`. */
  readonly namespace: string;
  /** The address on this side (the media node listens on it) and the one inside the namespace. */
  readonly hostAddress: string;
  readonly namespaceAddress: string;
  readonly #ip: string;
  readonly #hostDevice: string;

  private constructor(ip: string, tag: number) {
    this.#ip = ip;
    this.namespace = `tg-limited-${tag}`;
    // Interface names are at most 15 characters.
    this.#hostDevice = `tgl${tag}h`;
    const subnet = `10.${200 + (tag % 50)}.${Math.floor(tag / 50) % 250}`;
    this.hostAddress = `${subnet}.1`;
    this.namespaceAddress = `${subnet}.2`;
  }

  /** Makes the namespace, the veth pair and the addresses (unique per process). */
  static create(ip: string): LimitedLink {
    const link = new LimitedLink(ip, process.pid % 100_000);
    const nsDevice = `tgl${process.pid % 100_000}n`;
    try {
      link.#run(['netns', 'add', link.namespace]);
      link.#run(['link', 'add', link.#hostDevice, 'type', 'veth', 'peer', 'name', nsDevice]);
      link.#run(['link', 'set', nsDevice, 'netns', link.namespace]);
      link.#run(['addr', 'add', `${link.hostAddress}/30`, 'dev', link.#hostDevice]);
      link.#run(['link', 'set', link.#hostDevice, 'up']);
      link.#inNamespace(['addr', 'add', `${link.namespaceAddress}/30`, 'dev', nsDevice]);
      link.#inNamespace(['link', 'set', nsDevice, 'up']);
      link.#inNamespace(['link', 'set', 'lo', 'up']);
    } catch (error) {
      link.destroy();
      throw error;
    }
    return link;
  }

  /**
   * Throttles what reaches the namespace (the host side's egress) to `rate`, e.g. `400kbit`, with a
   * token bucket (`tc tbf`) whose queue holds 300 ms: what a home router's buffer holds. Not `netem
   * rate`: the kernels this runs on (Firecracker VMs) are built without sch_netem.
   */
  limit(rate: string): void {
    execFileSync(this.#tc(), [
      ...['qdisc', 'add', 'dev', this.#hostDevice, 'root'],
      ...['tbf', 'rate', rate, 'burst', '5kb', 'latency', '300ms'],
    ]);
  }

  /** Lifts the limit (and drops what its queue held). */
  unlimit(): void {
    execFileSync(this.#tc(), ['qdisc', 'del', 'dev', this.#hostDevice, 'root']);
  }

  /** The command line that runs `command` inside the namespace. */
  commandInside(command: string[]): [string, string[]] {
    return [this.#ip, ['netns', 'exec', this.namespace, ...command]];
  }

  /** Removes the namespace (and with it the veth pair); safe to call on a half-made link. */
  destroy(): void {
    for (const args of [
      ['link', 'del', this.#hostDevice],
      ['netns', 'del', this.namespace],
    ]) {
      try {
        this.#run(args);
      } catch {
        // Not there (or already gone with the other).
      }
    }
  }

  #tc(): string {
    if (!tcTool) throw new Error('tc (iproute2) is not installed');
    return tcTool;
  }

  #run(args: string[]): void {
    execFileSync(this.#ip, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  #inNamespace(args: string[]): void {
    this.#run(['netns', 'exec', this.namespace, this.#ip, ...args]);
  }
}
