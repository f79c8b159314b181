/**
 * Throwaway TLS material for tests, made with the openssl CLI in a directory the test owns: a
 * self-signed CA and node certificates it signs (EC P-256, one day, IP SANs, server and client
 * auth — what the transport's mutual TLS needs). Debian's openssl; CI installs it.
 *
 * @example
 *   const pki = new TestPki(dir);
 *   pki.ca('ca');
 *   const node = pki.issue('ca', 'node', ['127.0.0.1']); // { cert, key, ca } file paths
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export interface IssuedCert {
  cert: string;
  key: string;
  /** The signing CA's certificate. */
  ca: string;
}

export class TestPki {
  constructor(readonly dir: string) {}

  /** A self-signed CA: `<name>.crt` and `<name>.key` in the directory. */
  ca(name: string): string {
    this.openssl('req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
    return join(this.dir, `${name}.crt`);
  }

  /** A certificate `name` signed by CA `ca`, valid for the IP addresses `ips`. */
  issue(ca: string, name: string, ips: readonly string[]): IssuedCert {
    const ext = `${name}.ext`;
    writeFileSync(join(this.dir, ext), `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`);
    this.openssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    this.openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', ext);
    return { cert: join(this.dir, `${name}.crt`), key: join(this.dir, `${name}.key`), ca: join(this.dir, `${ca}.crt`) };
  }

  /** The `troupe start` flags for an issued certificate. */
  static flags(c: IssuedCert): string[] {
    return ['--tls-cert', c.cert, '--tls-key', c.key, '--tls-ca', c.ca];
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }
}
