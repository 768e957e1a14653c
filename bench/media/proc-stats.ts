import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU seconds (user + system, every thread) and resident memory of a process, read from /proc. */
export interface ProcessSample {
  cpuSeconds: number;
  rssBytes: number;
  /**
   * The part of rssBytes that is file-backed pages (RssFile): the executable's and libraries' code
   * mapped in. For Node it is most of an idle process (~60 MB of the node binary on this kernel, which
   * maps file pages in large folios) and varies between runs with the page cache, not with the load.
   */
  rssFileBytes: number;
  at: number;
}

export function sampleProcess(pid: number): ProcessSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kilobytes = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
  return {
    cpuSeconds: (utime + stime) / CLOCK_TICKS_PER_SECOND,
    rssBytes: kilobytes('VmRSS'),
    rssFileBytes: kilobytes('RssFile'),
    at: performance.now(),
  };
}

/** CPU used between two samples, as a share of one core. */
export function cpuShare(before: ProcessSample, after: ProcessSample): number {
  return (after.cpuSeconds - before.cpuSeconds) / ((after.at - before.at) / 1000);
}

/** The sum of several processes' samples (a benchmark's SFU that runs as more than one). */
export function sampleProcesses(pids: readonly number[]): ProcessSample {
  const samples = pids.map((pid) => sampleProcess(pid));
  return {
    cpuSeconds: samples.reduce((sum, sample) => sum + sample.cpuSeconds, 0),
    rssBytes: samples.reduce((sum, sample) => sum + sample.rssBytes, 0),
    rssFileBytes: samples.reduce((sum, sample) => sum + sample.rssFileBytes, 0),
    at: performance.now(),
  };
}
