/**
 * The seed's flake set up for remote builds: minimal-vm built for a system nothing on a test
 * machine builds by itself (fresh on every run, so nix really builds it), and builder-vm's nix
 * building it too (its nix.settings.extra-platforms). Plus what its guests need here.
 */
import fs from 'node:fs';
import path from 'node:path';
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
