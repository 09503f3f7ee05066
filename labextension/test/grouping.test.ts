// Unit tests of the launcher's grouping and ordering, and of the kernelspec
// block reader (the one place `metadata.envmgr` and its `v` are read).
import { describe, expect, it } from 'vitest';
import { groupSections, layoutItems } from '../src/grouping';
import { envmgrKernel, METADATA_VERSION, releaseLabel } from '../src/metadata';

type Block = Record<string, unknown>;

function block(family: string, release: string | null, extra: Block = {}): Block {
  return {
    envmgr: {
      v: METADATA_VERSION,
      family,
      group: extra.group ?? 'Team',
      display_name: extra.display_name ?? family.toUpperCase(),
      channel: release ? 'stable' : 'latest',
      release,
      build_id: '20260101T000000Z-abcdef',
      built: extra.built ?? '2026-01-01T00:00:00Z',
      support_until: release ? '2029-01-01' : null,
      ...extra
    }
  };
}

function entry(name: string, metadata: Block) {
  const kernel = envmgrKernel(metadata);
  if (!kernel) {
    throw new Error(`${name}: not an envmgr kernel`);
  }
  return { name, kernel };
}

function item(name: string, metadata: unknown, category = 'Notebook') {
  return { command: 'notebook:create-new', category, args: { kernelName: name }, metadata: { kernel: metadata } };
}

describe('groupSections', () => {
  const entries = [
    entry('b-2025.9', block('b', '2025.9', { group: 'Beam' })),
    entry('a-2025.10', block('a', '2025.10')),
    entry('a-latest', block('a', null)),
    entry('a-2025.9', block('a', '2025.9')),
    entry('a-2024.12', block('a', '2024.12')),
    entry('b-latest', block('b', null, { group: 'Beam' }))
  ];

  it('makes one section per group, sorted by group name', () => {
    expect(groupSections(entries).map(s => s.group)).toEqual(['Beam', 'Team']);
  });

  it('lists latest first, then the newest stable release (numeric: 2025.10 > 2025.9)', () => {
    const team = groupSections(entries)[1];
    expect(team.current.map(e => e.name)).toEqual(['a-latest', 'a-2025.10']);
  });

  it('folds the older releases, newest first', () => {
    const team = groupSections(entries)[1];
    expect(team.folded.map(e => e.name)).toEqual(['a-2025.9', 'a-2024.12']);
    expect(groupSections(entries)[0].folded).toEqual([]);
  });

  it('orders families by display name within a section', () => {
    const two = [
      entry('z-latest', block('z', null, { display_name: 'Alpha' })),
      entry('y-latest', block('y', null, { display_name: 'Beta' }))
    ];
    expect(groupSections(two)[0].current.map(e => e.name)).toEqual(['z-latest', 'y-latest']);
  });

  it('breaks a tie between equal releases by build date, newest first', () => {
    const twins = [
      entry('a-1-old', block('a', '1', { built: '2025-01-01T00:00:00Z' })),
      entry('a-1-new', block('a', '1', { built: '2026-01-01T00:00:00Z' }))
    ];
    const section = groupSections(twins)[0];
    expect(section.current.map(e => e.name)).toEqual(['a-1-new']);
    expect(section.folded.map(e => e.name)).toEqual(['a-1-old']);
  });
});

describe('layoutItems', () => {
  it('keeps kernels with unknown or missing metadata in the stock sections', () => {
    const items = [
      item('a-latest', block('a', null)),
      item('a-latest', block('a', null), 'Console'),
      item('plain', {}),
      item('nometa', undefined),
      item('broken', { envmgr: { family: 'x' } }), // no group, no channel
      item('stable-without-release', { envmgr: { family: 'x', group: 'G', channel: 'stable' } }),
      { command: 'terminal:create-new', category: 'Other' }
    ];
    const layout = layoutItems(items, { notebook: 'Notebook', console: 'Console' });
    expect(layout.groups.map(g => g.group)).toEqual(['Team']);
    expect(layout.groups[0].current[0].launchers.map(l => l.kind)).toEqual(['notebook', 'console']);
    expect(layout.ordinary.map(i => (i.args as Block | undefined)?.kernelName ?? i.command)).toEqual([
      'plain',
      'nometa',
      'broken',
      'stable-without-release',
      'terminal:create-new'
    ]);
  });
});

describe('envmgrKernel (metadata.envmgr, versioned)', () => {
  it('reads version 1 and blocks written before versioning (v missing = 0)', () => {
    expect(envmgrKernel(block('a', null))?.version).toBe(1);
    const old = block('a', '2025.9');
    delete (old.envmgr as Block).v;
    expect(envmgrKernel(old)?.version).toBe(0);
  });

  it('reads a newer version by the keys it knows', () => {
    expect(envmgrKernel(block('a', '2025.9', { v: 2, extra: true }))?.release).toBe('2025.9');
  });

  it('rejects a block whose version is not a whole number', () => {
    expect(envmgrKernel(block('a', null, { v: '1' }))).toBeNull();
    expect(envmgrKernel(block('a', null, { v: 1.5 }))).toBeNull();
    expect(envmgrKernel(block('a', null, { v: -1 }))).toBeNull();
  });

  it('gives nothing for missing or foreign metadata', () => {
    expect(envmgrKernel(undefined)).toBeNull();
    expect(envmgrKernel({ envmgr: [] })).toBeNull();
    expect(envmgrKernel({ debugger: true })).toBeNull();
  });

  it('labels a release with its name as promoted, everywhere', () => {
    expect(releaseLabel(envmgrKernel(block('a', '2025.9'))!)).toBe('2025.9');
    expect(releaseLabel(envmgrKernel(block('a', null))!)).toBe('latest');
  });
});
