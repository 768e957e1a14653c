import { describe, expect, it } from 'vitest';
import type { MediaNodeRegistration } from '../../shared/src/media-control.ts';
import { chooseNode } from '../../workers/src/media/media-node-placement.ts';

const node = (url: string, load: number, capacity: number, draining = false): MediaNodeRegistration => ({
  id: url,
  url,
  load,
  capacity,
  draining,
  updated_at: new Date().toISOString(),
});

describe('chooseNode', () => {
  it('takes the live node with the lowest load relative to capacity', () => {
    expect(chooseNode([node('http://a', 50, 100), node('http://b', 30, 200), node('http://c', 10, 20)])).toBe(
      'http://b',
    );
  });

  it('skips draining and full nodes, and answers undefined when none is left', () => {
    expect(chooseNode([node('http://a', 0, 100, true), node('http://b', 100, 100), node('http://c', 99, 100)])).toBe(
      'http://c',
    );
    expect(chooseNode([node('http://a', 0, 100, true), node('http://b', 5, 0)])).toBeUndefined();
    expect(chooseNode([])).toBeUndefined();
  });
});
