import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress } from 'node:zlib';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

interface Unpacked {
  executable: string;
  /** A directory with a fonts.conf for the fonts shipped beside the browser. */
  fontconfig: string;
}

/**
 * The Chromium that the `@sparticuz/chromium` dev dependency ships for x86_64
 * Linux, brotli-compressed, unpacked once per version under the temp directory:
 * every machine drives the same browser, whatever it has installed. Unpacking goes
 * to a private directory that is renamed into place, so test files that start at
 * once never run a half-written binary.
 */
async function unpackChromium(): Promise<Unpacked> {
  if (platform() !== 'linux' || arch() !== 'x64') {
    throw new Error(`the dashboard tests drive the Chromium of @sparticuz/chromium, built for x86_64 Linux only (this is ${platform()}-${arch()})`);
  }
  const entry = createRequire(import.meta.url).resolve('@sparticuz/chromium');
  const pkgDir = join(dirname(entry), '..', '..');
  const { version } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  const dir = join(tmpdir(), `abp-chromium-${version}`);
  const unpacked = { executable: join(dir, 'chromium'), fontconfig: join(dir, 'fonts') };
  if (existsSync(unpacked.executable)) return unpacked;

  const staging = `${dir}.${process.pid}.part`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(staging, 'fonts'), { recursive: true });
  try {
    const brotli = (name: string) => createReadStream(join(pkgDir, 'bin', name)).pipe(createBrotliDecompress());
    await pipeline(brotli('chromium.br'), createWriteStream(join(staging, 'chromium'), { mode: 0o755 }));
    // fonts.tar.br holds fonts.conf (which names lambda paths) and fonts/. Ours points at the unpacked
    // copy, after the system's fonts if it has any (for glyphs such as arrows that Open Sans lacks).
    // The archive is written out whole before tar reads it: tar stops reading at the archive's end
    // marker, and a pipe into it then closed before the decompressor had pushed its last bytes.
    const fontsTar = join(staging, 'fonts.tar');
    await pipeline(brotli('fonts.tar.br'), createWriteStream(fontsTar));
    const tar = spawn('tar', ['-x', '-f', fontsTar, '-C', join(staging, 'fonts')], { stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = await new Promise<number | null>((resolve, reject) => tar.on('error', reject).on('close', resolve));
    if (exited !== 0) throw new Error('tar could not unpack the fonts shipped with @sparticuz/chromium');
    rmSync(fontsTar);
    const fontDir = join(dir, 'fonts', 'fonts');
    writeFileSync(
      join(staging, 'fonts', 'fonts.conf'),
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>\n  <dir>${fontDir}</dir>\n  <cachedir>${join(dir, 'fonts-cache')}</cachedir>\n</fontconfig>\n`,
    );
    renameSync(staging, dir);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    // Another test file unpacked the same version first: use that one.
    if (existsSync(unpacked.executable)) return unpacked;
    throw err;
  }
  return unpacked;
}

/** Headless Chromium on a throwaway profile: the browser the dashboard tests drive. */
export async function launchChromium(): Promise<Browser> {
  const { executable, fontconfig } = await unpackChromium();
  const profile = mkdtempSync(join(tmpdir(), 'abp-chromium-profile-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: executable,
      headless: true,
      env: { ...process.env, FONTCONFIG_PATH: fontconfig },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    const page = context.pages()[0] ?? (await context.newPage());
    return {
      context,
      page,
      async close() {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    // The binary links to the system's NSS (libnss3, libnspr4); say so rather than leave a loader error alone.
    if (/error while loading shared libraries/.test((err as Error).message)) {
      throw new Error(`${(err as Error).message}\n${executable} needs libnss3 and libnspr4 (Debian: apt-get install libnss3)`);
    }
    throw err;
  }
}
