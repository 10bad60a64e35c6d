/** Test-wide environment: nix without a daemon, users group or substituters; no login-shell probing. */
process.env.NIX_CONFIG = [
  'experimental-features = nix-command flakes',
  'build-users-group =',
  'substituters =',
  'sandbox = false',
].join('\n');
process.env.NIXVM_NO_LOGIN_SHELL = '1';
