// Unit checks of the e2e helpers themselves (no servers needed).
import assert from 'node:assert/strict';
import test from 'node:test';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  assertIsolatedNetns,
  candidateAddresses,
  demoUrl,
  gzipSize,
  isLoopbackAddress,
  signalWsUrl,
  tempDir,
} from './lib.mjs';

test('the e2e tests run in a network namespace with only lo', () => {
  assertIsolatedNetns();
});

test('candidateAddresses reads the connection and related addresses', () => {
  assert.deepEqual(
    candidateAddresses('candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host generation 0 ufrag x network-id 1'),
    ['127.0.0.1'],
  );
  assert.deepEqual(
    candidateAddresses('a=candidate:2 1 udp 1685987071 203.0.113.5 6000 typ srflx raddr 10.0.0.2 rport 5000'),
    ['203.0.113.5', '10.0.0.2'],
  );
  assert.deepEqual(candidateAddresses('candidate:3 1 udp 1 ::1 9 typ prflx raddr 0.0.0.0 rport 0'), ['::1']);
  assert.deepEqual(candidateAddresses(''), []);
  assert.throws(() => candidateAddresses('nonsense'), /malformed/);
});

test('only 127.0.0.0/8 and ::1 count as loopback', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '[::1]']) assert.ok(isLoopbackAddress(a), a);
  for (const a of ['10.0.0.1', '192.168.1.2', 'fe80::1', '0.0.0.0', 'abcd-1234.local', '1127.0.0.1'])
    assert.ok(!isLoopbackAddress(a), a);
});

test('URL helpers', () => {
  assert.equal(signalWsUrl('http://127.0.0.1:8080'), 'ws://127.0.0.1:8080/ws');
  const u = new URL(demoUrl('http://127.0.0.1:8080', 'http://127.0.0.1:8081'));
  assert.equal(u.searchParams.get('seed'), 'http://127.0.0.1:8081');
});

test('gzipSize compresses with gzip -9', async () => {
  const f = path.join(await tempDir(), 'zeros.bin');
  writeFileSync(f, Buffer.alloc(100_000));
  const n = gzipSize(f);
  assert.ok(n > 20 && n < 1_000, `gzip size ${n}`);
});
