// Hale for an Electron or Node desktop app: a posture token bound to the app's own key from the
// laptop's Hale agent (its local socket or named pipe), and the DPoP proof that presents it to
// the messaging backend. No dependencies beyond Node's own modules. The protocol is described in
// desktop/README.md; mdmserver's TestDesktopAppThroughAgent runs this file against a real agent
// and server, and verifies its proofs as the backend does.
//
//   const hale = require('./hale');
//   const keys = hale.newKey();                       // keep it in the OS keystore in a real app
//   const t = await hale.token(keys);                 // {token, expires_at, device_id, ...}
//   fetch(url, { method: 'POST', headers: {
//     Authorization: `DPoP ${t.token}`, DPoP: hale.proof(keys, 'POST', url, t.token) } });
'use strict';
const crypto = require('node:crypto');
const net = require('node:net');
const readline = require('node:readline');

const DEFAULT_ADDRESS = process.platform === 'win32' ? '\\\\.\\pipe\\hale-agent'
  : process.platform === 'darwin' ? '/var/run/hale-agent/agent.sock' : '/run/hale-agent/agent.sock';

const b64u = (b) => Buffer.from(b).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

// newKey makes an EC P-256 key pair; jwk is its public half as {kty, crv, x, y}.
function newKey() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, jwk: publicKey.export({ format: 'jwk' }) };
}

// jws signs header and claims with ES256 (r || s, as JWS wants it).
function jws(keys, header, claims) {
  const input = b64u(JSON.stringify(header)) + '.' + b64u(JSON.stringify(claims));
  const sig = crypto.sign('sha256', Buffer.from(input), { key: keys.privateKey, dsaEncoding: 'ieee-p1363' });
  return input + '.' + b64u(sig);
}

// token asks the agent for a token bound to keys: a nonce, then a proof over it, on one
// connection. A refusal rejects with an Error whose code is the agent's (app_not_allowed,
// device_denied, server_unreachable, ...).
function token(keys, address = DEFAULT_ADDRESS) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(address);
    const lines = readline.createInterface({ input: sock });
    sock.on('error', reject);
    lines.on('line', (line) => {
      const msg = JSON.parse(line);
      if (msg.error) {
        sock.destroy();
        const err = new Error(`hale agent: ${msg.error.code}: ${msg.error.detail || ''}`);
        err.code = msg.error.code;
        err.reasons = msg.error.reasons;
        return reject(err);
      }
      if (msg.nonce) {
        const proof = jws(keys, { typ: 'dpop+jwt', alg: 'ES256', jwk: keys.jwk },
          { jti: crypto.randomUUID(), htm: 'POST', htu: 'hale-agent:/v1/token', iat: now(), nonce: msg.nonce });
        sock.write(JSON.stringify({ op: 'token', proof }) + '\n');
        return;
      }
      sock.end();
      resolve(msg);
    });
    sock.write(JSON.stringify({ op: 'nonce' }) + '\n');
  });
}

// proof is the DPoP header value (RFC 9449) for one request of method to url presenting tok.
function proof(keys, method, url, tok) {
  const ath = b64u(crypto.createHash('sha256').update(tok).digest());
  return jws(keys, { typ: 'dpop+jwt', alg: 'ES256', jwk: keys.jwk },
    { jti: crypto.randomUUID(), htm: method, htu: url, iat: now(), ath });
}

module.exports = { newKey, token, proof, DEFAULT_ADDRESS };

// node hale.js [ADDRESS [URL]]: prints the agent's answer and, with URL, a proof for POST URL.
if (require.main === module) {
  const keys = newKey();
  token(keys, process.argv[2] || DEFAULT_ADDRESS).then((t) => {
    if (process.argv[3]) t.proof = proof(keys, 'POST', process.argv[3], t.token);
    console.log(JSON.stringify(t));
  }, (err) => {
    console.log(JSON.stringify({ error: { code: err.code || 'dial', detail: err.message } }));
    process.exitCode = 1;
  });
}
