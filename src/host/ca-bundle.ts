/**
 * The host's CA certificate bundle, found the way the Nix installer's profile script
 * (nix-daemon.sh / nix.sh) sets NIX_SSL_CERT_FILE: the variable itself when it names a file, else
 * the first distribution bundle that exists, else the one in a Nix profile (the user's profile
 * before the default one: the script favours the profile listed last in NIX_PROFILES). The agent
 * started by launchd never ran that script, so it looks for itself.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where the installer's script looks, in its order, after NIX_SSL_CERT_FILE. */
export function caBundleCandidates(home: string = os.homedir()): string[] {
  return [
    '/etc/ssl/certs/ca-certificates.crt', // NixOS, Ubuntu, Debian, Gentoo, Arch
    '/etc/ssl/ca-bundle.pem', // openSUSE Tumbleweed
    '/etc/ssl/certs/ca-bundle.crt', // old NixOS
    '/etc/pki/tls/certs/ca-bundle.crt', // Fedora, CentOS
    path.join(home, '.nix-profile/etc/ssl/certs/ca-bundle.crt'),
    '/nix/var/nix/profiles/default/etc/ssl/certs/ca-bundle.crt',
  ];
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The bundle to copy into a VM, or null when there is none; `tried` lists where it looked. */
export function findCaBundle(
  env: NodeJS.ProcessEnv = process.env,
  candidates: string[] = caBundleCandidates(),
): { path: string | null; tried: string[] } {
  const tried: string[] = [];
  const fromEnv = env.NIX_SSL_CERT_FILE;
  if (fromEnv) {
    tried.push(`NIX_SSL_CERT_FILE=${fromEnv}`);
    if (isFile(fromEnv)) return { path: fromEnv, tried };
  }
  for (const c of candidates) {
    tried.push(c);
    if (isFile(c)) return { path: c, tried };
  }
  return { path: null, tried };
}
