import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests spawn real nix and simulated VMs; two cores, so keep the pool small.
    setupFiles: ['test/setup-env.ts'],
    // Builds the vfkit simulator once per run; prints which nix the run uses (CI runs the
    // nix-facing tests on several versions).
    globalSetup: ['test/global-setup.ts', 'test/global-nix.ts'],
    pool: 'forks',
    maxWorkers: 2,
  },
});
