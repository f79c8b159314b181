import { defineConfig } from 'vitest/config';
export default defineConfig({ test: { pool: 'forks', testTimeout: 120_000, env: { TROUPE_LOG_LEVEL: 'silent' } } });
