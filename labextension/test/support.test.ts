// Unit tests of end-of-support notices, successors and the notebook block.
import { describe, expect, it } from 'vitest';
import { envmgrKernel } from '../src/metadata';
import {
  buildIdExpression,
  notebookBlock,
  parseBuildId,
  parseRetired,
  retiredSources,
  successorOf,
  supportNotice
} from '../src/support';

const TODAY = new Date('2026-12-01T12:00:00Z');

function meta(family: string, release: string | null, until: string | null) {
  return {
    envmgr: {
      v: 1, family, group: 'G', display_name: 'Example', channel: release ? 'stable' : 'latest',
      release, build_id: '20260101T000000Z-abcdef', built: '', support_until: until
    }
  };
}

const SPECS = {
  'example-latest': meta('example', null, null),
  'example-2025.9': meta('example', '2025.9', '2026-12-31'),
  'example-2025.10': meta('example', '2025.10', '2027-01-15'), // ending too: skipped as successor
  'example-2026.1': meta('example', '2026.1', '2029-01-01'),
  python3: {}
};

describe('supportNotice', () => {
  it('announces a stable kernel within the notice period, with the next good release', () => {
    const n = supportNotice('example-2025.9', SPECS, new Map(), TODAY, 90);
    expect(n).toMatchObject({ kind: 'expiring', date: '2026-12-31', daysLeft: 30 });
    expect(n?.successor).toEqual({ name: 'example-2026.1', displayName: 'Example · 2026.1' });
  });

  it('says nothing outside the notice period, for latest, or for other kernels', () => {
    expect(supportNotice('example-2025.9', SPECS, new Map(), TODAY, 10)).toBeNull();
    expect(supportNotice('example-2026.1', SPECS, new Map(), TODAY, 90)).toBeNull();
    expect(supportNotice('example-latest', SPECS, new Map(), TODAY, 90)).toBeNull();
    expect(supportNotice('python3', SPECS, new Map(), TODAY, 90)).toBeNull();
    expect(supportNotice('nope', SPECS, new Map(), TODAY, 90)).toBeNull();
  });

  it('announces a retired kernel with its successor', () => {
    const retired = new Map(
      parseRetired({
        v: 1,
        retired: [{ kernel: 'example-2024.1', family: 'example', release: '2024.1', retired: '2026-11-30',
                    successor: 'example-2025.9', successor_display_name: 'Example · 2025.9' }]
      }).map(e => [e.kernel, e])
    );
    const n = supportNotice('example-2024.1', SPECS, retired, TODAY, 90);
    expect(n).toMatchObject({ kind: 'retired', date: '2026-11-30' });
    // computed from the live kernels: 2025.9 and 2025.10 end within the notice period
    expect(n?.successor?.name).toBe('example-2026.1');
  });

  it('falls back to latest when no newer release lasts', () => {
    expect(successorOf('example', '2026.1', SPECS, TODAY)?.name).toBe('example-latest');
  });
});

describe('helpers', () => {
  it('finds the build id in python and R answers', () => {
    expect(parseBuildId("'20261201T021340Z-ab12cd'")).toBe('20261201T021340Z-ab12cd');
    expect(parseBuildId('[1] "20261201T021340Z-ab12cd-2"')).toBe('20261201T021340Z-ab12cd-2');
    expect(parseBuildId("''")).toBeNull();
    expect(buildIdExpression('R')).toContain('Sys.getenv');
  });

  it('writes {family, build, release?, v} and keeps migrated_from', () => {
    const k = envmgrKernel(SPECS['example-2025.9'])!;
    expect(notebookBlock(k, 'B', { migrated_from: 'example-2024.1', other: 1 })).toEqual({
      family: 'example', build: 'B', release: '2025.9', v: 1, migrated_from: 'example-2024.1'
    });
    expect(notebookBlock(envmgrKernel(SPECS['example-latest'])!, 'B', undefined)).toEqual({
      family: 'example', build: 'B', v: 1
    });
  });

  it('asks one kernelspec per family for the retired list', () => {
    expect(retiredSources(SPECS)).toEqual(['example-latest']);
  });
});
