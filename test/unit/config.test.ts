import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';

describe('resolveConfig: the original ABP names and ABP_MAX_RETRIES', () => {
  it('ABP_MAX_RETRIES is the default max_retries of a new job: 3 when unset', () => {
    expect(resolveConfig({}).defaultMaxRetries).toBe(3);
    expect(resolveConfig({ ABP_MAX_RETRIES: '' }).defaultMaxRetries).toBe(3);
    expect(resolveConfig({ ABP_MAX_RETRIES: '0' }).defaultMaxRetries).toBe(0);
    expect(resolveConfig({ ABP_MAX_RETRIES: '7' }).defaultMaxRetries).toBe(7);
  });

  it('refuses an ABP_MAX_RETRIES that is not a whole number from 0 to 100, naming it', () => {
    for (const bad of ['lots', '-1', '1.5', '101', 'Infinity']) {
      expect(() => resolveConfig({ ABP_MAX_RETRIES: bad }), bad).toThrow(`ABP_MAX_RETRIES: expected an integer from 0 to 100, got ${JSON.stringify(bad)}`);
    }
  });

  it('ABP_STORAGE_PATH is an alias of ABP_HOME, and ABP_HOME wins when both are set', () => {
    expect(resolveConfig({}).home).toBe(join(homedir(), '.abp'));
    expect(resolveConfig({ ABP_STORAGE_PATH: '/srv/abp-store' }).home).toBe('/srv/abp-store');
    expect(resolveConfig({ ABP_STORAGE_PATH: '/srv/abp-store' }).db).toBe('/srv/abp-store/abp.db');
    expect(resolveConfig({ ABP_STORAGE_PATH: 'relative/store' }).home).toBe(resolve('relative/store'));
    expect(resolveConfig({ ABP_HOME: '/srv/home', ABP_STORAGE_PATH: '/srv/abp-store' }).home).toBe('/srv/home');
    expect(resolveConfig({ ABP_HOME: '', ABP_STORAGE_PATH: '/srv/abp-store' }).home).toBe('/srv/abp-store');
  });

  it('ABP_DASHBOARD_PORT is an alias of ABP_HTTP_PORT, and ABP_HTTP_PORT wins when both are set', () => {
    expect(resolveConfig({}).httpPort).toBe(7070);
    expect(resolveConfig({ ABP_HTTP_PORT: '8080' }).httpPort).toBe(8080);
    expect(resolveConfig({ ABP_DASHBOARD_PORT: '9090' }).httpPort).toBe(9090);
    expect(resolveConfig({ ABP_HTTP_PORT: '8080', ABP_DASHBOARD_PORT: '9090' }).httpPort).toBe(8080);
    expect(resolveConfig({ ABP_HTTP_PORT: '', ABP_DASHBOARD_PORT: '9090' }).httpPort).toBe(9090);
    expect(resolveConfig({ ABP_HTTP_PORT: '0' }).httpPort).toBe(0);
  });

  it('an invalid port is refused naming the variable that was read; the alias is not read when ABP_HTTP_PORT is set', () => {
    expect(() => resolveConfig({ ABP_DASHBOARD_PORT: 'eighty' })).toThrow('ABP_DASHBOARD_PORT: expected an integer from 0 to 65535, got "eighty"');
    expect(() => resolveConfig({ ABP_HTTP_PORT: '70000' })).toThrow('ABP_HTTP_PORT: expected an integer from 0 to 65535, got "70000"');
    expect(() => resolveConfig({ ABP_HTTP_PORT: '-1', ABP_DASHBOARD_PORT: '9090' })).toThrow(/^ABP_HTTP_PORT: /);
    expect(resolveConfig({ ABP_HTTP_PORT: '8080', ABP_DASHBOARD_PORT: 'eighty' }).httpPort).toBe(8080);
  });

  it('errors are invalid_input, like every other setting', () => {
    try {
      resolveConfig({ ABP_MAX_RETRIES: 'x' });
      expect.unreachable();
    } catch (err) {
      expect((err as { code?: string }).code).toBe('invalid_input');
    }
  });
});
