/**
 * The one settings schema: every field's type, bounds and default, and the checks that phrase a
 * bad value for people. The agent's store, the control socket and the app's IPC all validate with
 * it, so they can never disagree about what a setting may hold. Plain code (the renderer loads it too).
 */
import { AgentError } from './errors.ts';
import { plainRecord } from './records.ts';
import type { Settings } from './types.ts';

/** The JSON schema subset we use (and check ourselves, to phrase errors for people). */
export interface FieldSchema {
  type?: 'string' | 'number' | 'integer' | 'boolean' | 'array' | 'object' | ReadonlyArray<'string' | 'null'>;
  enum?: readonly string[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  items?: FieldSchema;
  uniqueItems?: boolean;
  additionalProperties?: FieldSchema;
  default?: unknown;
  description?: string;
}

const ABSOLUTE = '^/';
// A user name that cannot be read as an ssh option (`-oProxyCommand=…`) or split by a shell.
const SSH_USER = '^[A-Za-z0-9_][A-Za-z0-9_.-]*$';
const IFNAME = '^[A-Za-z0-9][A-Za-z0-9._-]*$';

/** What a pattern means, for error sentences. */
const PATTERN_MEANING: Record<string, string> = {
  [ABSOLUTE]: 'an absolute path (starting with /)',
  [SSH_USER]: 'a user name of letters, digits, dots, dashes and underscores that does not start with a dash or dot',
  [IFNAME]: 'a network interface name like bridge100',
};

export const SETTINGS_SCHEMA = {
  flakes: {
    type: 'array',
    items: { type: 'string', minLength: 1, pattern: ABSOLUTE },
    uniqueItems: true,
    default: [],
    description: 'Flake directories whose nixosConfigurations are the VMs.',
  },
  autoRebuild: {
    type: 'string',
    // "restart" is apply's old name, kept so settings files that say it still load.
    enum: ['off', 'build', 'apply', 'restart'],
    default: 'off',
    description:
      'On a flake change: nothing, build stale VMs, or build and apply to running ones (switch in place when possible, else restart; "restart" is its old name).',
  },
  autostart: {
    type: 'object',
    additionalProperties: { type: 'boolean' },
    default: {},
    description: 'VM name → start when the agent starts.',
  },
  sshUser: {
    type: 'object',
    additionalProperties: { type: 'string', minLength: 1, maxLength: 64, pattern: SSH_USER },
    default: {},
    description: 'VM name → ssh user instead of the first normal user.',
  },
  sshKeyCredential: {
    type: 'object',
    additionalProperties: { type: 'boolean' },
    default: {},
    description:
      "VM name → pass nixvm's public key as the systemd credential ssh.authorized_keys.root on the kernel command line (default: on where the guest's tmpfiles write that credential).",
  },
  stopTimeoutSec: {
    type: 'number',
    minimum: 1,
    maximum: 3600,
    default: 30,
    description: 'Seconds a guest gets to shut down before a hard stop.',
  },
  bridgeInterface: {
    type: ['string', 'null'],
    minLength: 1,
    maxLength: 15,
    pattern: IFNAME,
    default: null,
    description: 'The vmnet bridge for link-local addresses; null detects it.',
  },
  onQuit: {
    type: 'string',
    enum: ['keep', 'stop'],
    default: 'keep',
    description: 'When the app quits: keep VMs running or stop them.',
  },
  nixPath: {
    type: ['string', 'null'],
    minLength: 1,
    pattern: ABSOLUTE,
    default: null,
    description: 'The nix binary; null finds it.',
  },
  vfkitPath: {
    type: ['string', 'null'],
    minLength: 1,
    pattern: ABSOLUTE,
    default: null,
    description: 'The vfkit binary; null finds it.',
  },
  terminalApp: {
    type: 'string',
    minLength: 1,
    maxLength: 200,
    default: 'Terminal',
    description: 'Terminal used by "Open ssh in Terminal".',
  },
  sharedDir: {
    type: 'object',
    additionalProperties: { type: 'string', minLength: 1, maxLength: 1024, pattern: ABSOLUTE },
    default: {},
    description:
      "VM name → the host folder its ${SHARED_DIR:-…} shares use (else $SHARED_DIR, else the run's $TMPDIR/xchg).",
  },
  includeConfigurations: {
    type: 'object',
    additionalProperties: {
      type: 'array',
      items: { type: 'string', minLength: 1, maxLength: 256 },
      uniqueItems: true,
    },
    default: {},
    description: 'Flake folder → nixosConfigurations to show as VMs although they set none of the options nixvm reads.',
  },
  excludeConfigurations: {
    type: 'object',
    additionalProperties: {
      type: 'array',
      items: { type: 'string', minLength: 1, maxLength: 256 },
      uniqueItems: true,
    },
    default: {},
    description: 'Flake folder → nixosConfigurations never to show, even when they look like VMs.',
  },
  builderVm: {
    type: ['string', 'null'],
    minLength: 1,
    maxLength: 256,
    default: null,
    description:
      "The VM nixvm makes this machine's remote builder while it runs (`nixvm builder use <vm>`); null: none.",
  },
  builderNixpkgs: {
    type: 'string',
    minLength: 1,
    maxLength: 512,
    default: 'github:NixOS/nixpkgs/nixpkgs-unstable',
    description:
      'The nixpkgs (a flake reference or an absolute path) whose prebuilt darwin.linux-builder-vz `nixvm builder setup` runs when there is no builder.',
  },
} as const satisfies Record<keyof Settings, FieldSchema>;

export const SETTINGS_KEYS = Object.keys(SETTINGS_SCHEMA) as Array<keyof Settings>;

export function defaultSettings(): Settings {
  const out: Record<string, unknown> = {};
  for (const k of SETTINGS_KEYS) out[k] = structuredClone(SETTINGS_SCHEMA[k].default);
  return out as unknown as Settings;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

function typeName(t: NonNullable<FieldSchema['type']>): string {
  const one = (x: string): string =>
    ({
      string: 'a string',
      number: 'a number',
      integer: 'a whole number',
      boolean: 'true or false',
      array: 'a list',
      object: 'an object',
      null: 'null',
    })[x] ?? x;
  return typeof t === 'string' ? one(t) : t.map(one).join(' or ');
}

function hasType(v: unknown, t: string): boolean {
  switch (t) {
    case 'null':
      return v === null;
    case 'array':
      return Array.isArray(v);
    case 'object':
      return v !== null && typeof v === 'object' && !Array.isArray(v);
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    default:
      return typeof v === t;
  }
}

/**
 * Check `value` against `schema`; the problem as the end of a sentence ("must be …, got …"),
 * prefixed by where (`name`), or null. Mirrors what ajv enforces inside conf for the same schema.
 */
export function checkValue(name: string, schema: FieldSchema, value: unknown): string | null {
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => hasType(value, t)))
      return `${name} must be ${typeName(schema.type)}, got ${describe(value)}`;
    if (value === null) return null;
  }
  if (schema.enum && !schema.enum.includes(value as string)) {
    return `${name} must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${describe(value)}`;
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum)
      return `${name} must be at least ${schema.minimum}, got ${value}`;
    if (schema.maximum !== undefined && value > schema.maximum)
      return `${name} must be at most ${schema.maximum}, got ${value}`;
  }
  if (typeof value === 'string') {
    // JSON schema counts code points.
    const len = [...value].length;
    if (schema.minLength !== undefined && len < schema.minLength) return `${name} must not be empty`;
    if (schema.maxLength !== undefined && len > schema.maxLength)
      return `${name} must be at most ${schema.maxLength} characters, got ${len}`;
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
      return `${name} must be ${PATTERN_MEANING[schema.pattern] ?? `text matching ${schema.pattern}`}, got ${describe(value)}`;
    }
  }
  if (Array.isArray(value)) {
    if (schema.items) {
      for (const [i, item] of value.entries()) {
        const p = checkValue(`${name}[${i}]`, schema.items, item);
        if (p) return p;
      }
    }
    if (schema.uniqueItems) {
      for (let i = 0; i < value.length; i++) {
        for (let j = 0; j < i; j++) {
          if (JSON.stringify(value[i]) === JSON.stringify(value[j])) return `${name} lists ${describe(value[i])} twice`;
        }
      }
    }
  }
  if (schema.additionalProperties && hasType(value, 'object')) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const p = checkValue(`${name}.${k}`, schema.additionalProperties, v);
      if (p) return p;
    }
  }
  return null;
}

/** Every problem with a whole stored settings object (unknown keys are left alone, for newer versions). */
export function checkSettings(obj: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of SETTINGS_KEYS) {
    if (!(k in obj)) continue;
    const p = checkValue(k, SETTINGS_SCHEMA[k], obj[k]);
    if (p) out.push(p);
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Check a settings patch field by field. Throws AgentError('bad-request', one sentence naming the
 * field) for an unknown field or a bad value; returns the fields to change (undefined ones dropped).
 */
export function validateSettingsPatch(partial: unknown): Partial<Settings> {
  if (!isPlainObject(partial)) {
    throw new AgentError('bad-request', 'Settings must be given as an object of fields to change.');
  }
  const changes: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(partial)) {
    if (!Object.hasOwn(SETTINGS_SCHEMA, k)) {
      throw new AgentError(
        'bad-request',
        `There is no setting named ${JSON.stringify(k)}; known settings are ${SETTINGS_KEYS.join(', ')}.`,
      );
    }
    if (v === undefined) continue;
    const p = checkValue(k, SETTINGS_SCHEMA[k as keyof Settings], v);
    if (p) throw new AgentError('bad-request', `Setting ${p}.`);
    changes[k] = structuredClone(v);
  }
  return changes as Partial<Settings>;
}

/** The two per-flake settings that say which nixosConfigurations are VMs. */
export type ConfigurationFilters = Pick<Settings, 'includeConfigurations' | 'excludeConfigurations'>;

/** `map` with flake `dir`'s list made `names` (none: the flake's entry dropped). */
function withList(map: Record<string, string[]>, dir: string, names: readonly string[]): Record<string, string[]> {
  const out = plainRecord(map);
  if (names.length) out[dir] = [...names];
  else delete out[dir];
  return out;
}

/**
 * Which configurations of flake `dir` are VMs, after `names` are shown as VMs ('include'), hidden
 * ('exclude') or left for nixvm to decide again ('default'): a name is on one list at most, and a
 * flake whose list is empty has no entry. `nixvm flake include|exclude|default` is this.
 */
export function filterConfigurations(
  cur: ConfigurationFilters,
  dir: string,
  names: readonly string[],
  verb: 'include' | 'exclude' | 'default',
): ConfigurationFilters {
  const drop = (list: readonly string[] | undefined) => (list ?? []).filter((n) => !names.includes(n));
  const add = (list: readonly string[]) => [...new Set([...list, ...names])];
  const include = drop(cur.includeConfigurations[dir]);
  const exclude = drop(cur.excludeConfigurations[dir]);
  return {
    includeConfigurations: withList(cur.includeConfigurations, dir, verb === 'include' ? add(include) : include),
    excludeConfigurations: withList(cur.excludeConfigurations, dir, verb === 'exclude' ? add(exclude) : exclude),
  };
}

/**
 * Flake `dir`'s include (or exclude) list made exactly `names`, as typed (the settings window's
 * field: a name given twice is the schema's to refuse); a name on it leaves the other list.
 */
export function setConfigurationList(
  cur: ConfigurationFilters,
  dir: string,
  list: 'include' | 'exclude',
  names: readonly string[],
): ConfigurationFilters {
  const other = list === 'include' ? cur.excludeConfigurations : cur.includeConfigurations;
  const mine = list === 'include' ? cur.includeConfigurations : cur.excludeConfigurations;
  const others = withList(
    other,
    dir,
    (other[dir] ?? []).filter((n) => !names.includes(n)),
  );
  const own = withList(mine, dir, names);
  return list === 'include'
    ? { includeConfigurations: own, excludeConfigurations: others }
    : { includeConfigurations: others, excludeConfigurations: own };
}
