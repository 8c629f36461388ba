// Verifies a Sigstore bundle (DSSE envelope) against one PEM public key with @sigstore/verify,
// using public-key trust material only: no transparency log, no CT log, no timestamp authority.
//
//   node verify.mjs BUNDLE.json PUBLIC.pem [--match-hint]
//
// By default the given key is used whatever the bundle's key hint says (as `cosign --key` does).
// With --match-hint the key is registered under its key id (lower-hex SHA-256 of its DER
// SubjectPublicKeyInfo) and @sigstore/verify looks it up by the bundle's hint.
// Prints one JSON line; exits 0 when the bundle verifies, 1 when it does not, 2 on usage errors.
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { bundleFromJSON } from '@sigstore/bundle';
import { Verifier, toSignedEntity } from '@sigstore/verify';

const args = process.argv.slice(2);
const matchHint = args.includes('--match-hint');
const [bundlePath, keyPath] = args.filter((a) => a !== '--match-hint');
if (!bundlePath || !keyPath) {
  process.stderr.write('usage: node verify.mjs BUNDLE.json PUBLIC.pem [--match-hint]\n');
  process.exit(2);
}

const report = (ok, fields) => {
  process.stdout.write(`${JSON.stringify({ ok, ...fields })}\n`);
  process.exit(ok ? 0 : 1);
};

try {
  const publicKey = createPublicKey(readFileSync(keyPath));
  const keyId = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
  const timeless = { publicKey, validFor: () => true };
  const keyFinder = (hint) => {
    if (matchHint && hint !== keyId) {
      throw new Error(`key not found: ${hint}`);
    }
    return timeless;
  };
  const trustMaterial = {
    certificateAuthorities: [],
    timestampAuthorities: [],
    tlogs: [],
    ctlogs: [],
    publicKey: keyFinder,
  };
  const bundle = bundleFromJSON(JSON.parse(readFileSync(bundlePath, 'utf8')));
  const entity = toSignedEntity(bundle);
  const verifier = new Verifier(trustMaterial, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(entity);
  const envelope = bundle.content.dsseEnvelope;
  report(true, {
    keyId,
    hint: bundle.verificationMaterial.content.publicKey?.hint,
    payloadType: envelope.payloadType,
    statement: JSON.parse(Buffer.from(envelope.payload).toString('utf8')),
  });
} catch (e) {
  report(false, { error: e.name, code: e.code, message: e.message, fields: e.fields });
}
