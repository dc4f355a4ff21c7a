/**
 * A throwaway certificate authority and a server certificate for 127.0.0.1 / localhost, made
 * with openssl, for tests of TLS connections to real servers.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCerts {
  /** The CA certificate (PEM file), which clients are given to trust. */
  caFile: string;
  ca: string;
  /** The server's certificate and its private key (PEM files; the key PKCS#8, unencrypted). */
  certFile: string;
  keyFile: string;
  /** Key and certificate in one PEM file: a Kafka PEM keystore. */
  keystoreFile: string;
}

export function makeTestCerts(dir: string): TestCerts {
  const f = (name: string) => join(dir, name);
  const ssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=shardbridge-test-ca']);
  ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(f('san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('san.cnf')]);
  writeFileSync(f('keystore.pem'), readFileSync(f('server.key'), 'utf8') + readFileSync(f('server.pem'), 'utf8'));
  return { caFile: f('ca.pem'), ca: readFileSync(f('ca.pem'), 'utf8'), certFile: f('server.pem'), keyFile: f('server.key'), keystoreFile: f('keystore.pem') };
}
