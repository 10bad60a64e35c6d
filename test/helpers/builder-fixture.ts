/**
 * The seed's flake set up for remote builds: minimal-vm built for a system nothing on a test
 * machine builds by itself (fresh on every run, so nix really builds it), and builder-vm's nix
 * building it too (its nix.settings.extra-platforms). Plus what its guests need here, and the
 * stand-in for nixpkgs' darwin.linux-builder-vz published to a binary cache (the first builder).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bootstrapFlakeText } from '../../src/core/builders/bootstrap.ts';
import { copyFixture, type FlakeCopy } from './fixtures.ts';

export const FOREIGN = 'riscv64-linux';

export async function seedWithForeignVm(): Promise<FlakeCopy> {
  const flake = await copyFixture('seed-exact');
  const minimal = flake.file('hosts/minimal-vm.nix');
  fs.writeFileSync(
    minimal,
    fs
      .readFileSync(minimal, 'utf8')
      .replace(/\}\s*$/, `  nixvmTest.system = "${FOREIGN}";\n  nixvmTest.run = "${process.pid}-${Date.now()}";\n}\n`),
  );
  const builder = flake.file('hosts/builder-vm.nix');
  fs.writeFileSync(
    builder,
    fs
      .readFileSync(builder, 'utf8')
      .replace(
        'trusted-users = [ "builder" ];',
        `trusted-users = [ "builder" ];\n    extra-platforms = [ "${FOREIGN}" ];`,
      ),
  );
  return flake;
}

/** A loopback address of its own for a simulated guest, so that its port 22 is free. */
export function loopbackIp(): string {
  const r = () => Math.floor(Math.random() * 250) + 1;
  return `127.${20 + (process.pid % 200)}.${r()}.${r()}`;
}

/** builder-vm sets useHostCerts; a minimal machine (CI's Debian roots) has no CA bundle of its own. */
export function caBundle(dir: string): string {
  const certs = path.join(dir, 'host-ca-bundle.crt');
  fs.writeFileSync(certs, '-----BEGIN CERTIFICATE-----\nnixvm test bundle\n-----END CERTIFICATE-----\n');
  return certs;
}

/** sshd run as root wants its privilege-separation directory, which its service unit would make. */
export function sshdReady(): void {
  if (!fs.existsSync('/usr/sbin/sshd'))
    throw new Error("/usr/sbin/sshd is missing: install openssh-server (npm test's pretest does).");
  if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
}

const NIX = ['--extra-experimental-features', 'nix-command flakes'];
const nix = (...args: string[]) =>
  execFileSync('nix', [...NIX, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** Is `p` a valid path of this machine's store? */
export const storeHas = (p: string) => {
  try {
    execFileSync('nix-store', ['--check-validity', p], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const hostSystem = () => nix('eval', '--impure', '--raw', '--expr', 'builtins.currentSystem');

/** A stand-in nixpkgs whose builder runs `run` (a fresh toplevel) and also builds FOREIGN. */
export async function linuxBuilderStandIn(run: string): Promise<FlakeCopy> {
  const f = await copyFixture('seed-exact');
  f.write('nixpkgs/test-knobs.nix', `{ system = "aarch64-linux"; run = "${run}"; }\n`);
  const profile = f.file('nixpkgs/nix-builder-vz-vm.nix');
  const text = fs.readFileSync(profile, 'utf8');
  if (!text.includes('trusted-users = [ user ];'))
    throw new Error(`${profile} changed: no trusted-users line to extend`);
  fs.writeFileSync(
    profile,
    text.replace('trusted-users = [ user ];', `trusted-users = [ user ];\n    extra-platforms = [ "${FOREIGN}" ];`),
  );
  return f;
}

/**
 * The suite's nix settings (test/setup-env.ts) with `cache` as the one substituter. Added to,
 * never replacing them: without their `build-users-group =`, nix 2.34 as root builds as the
 * nixbld group, which a Debian root does not have (every build failed there on an empty store).
 */
export function nixConfigWithCache(cache: string): string {
  return `${process.env.NIX_CONFIG ?? ''}\nsubstituters = file://${cache}\nrequire-sigs = false\n`;
}

/** Build the builder's system (as a machine that builds aarch64-linux would), put it in `cache`, delete it here. */
export function publishToCache(nixpkgs: FlakeCopy, cache: string): string {
  const wrapper = fs.mkdtempSync(path.join(os.tmpdir(), 'nixvm-setup-wrapper-'));
  fs.writeFileSync(path.join(wrapper, 'flake.nix'), bootstrapFlakeText(`path:${nixpkgs.dir}`, hostSystem()));
  const [built] = JSON.parse(
    nix(
      'build',
      '--no-link',
      '--json',
      '--option',
      'extra-platforms',
      'aarch64-linux',
      `${wrapper}#nixosConfigurations.linux-builder.config.system.build.toplevel`,
    ),
  ) as Array<{ outputs: { out: string } }>;
  const out = built!.outputs.out;
  nix('copy', '--to', `file://${cache}`, out);
  // Only the toplevel, which this run's knob makes unique: the rest of its closure (the system
  // path, the fixture's host key) other tests running meanwhile may be building or booting.
  nix('store', 'delete', out);
  fs.rmSync(wrapper, { recursive: true, force: true });
  if (storeHas(out)) throw new Error(`${out} is still in this store; the setup would download nothing`);
  return out;
}
