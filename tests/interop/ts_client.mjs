// An MCP client built on the official TypeScript SDK, driven by tests/mcp_bridge/test_typescript_client.py against
// the live server. It prints one JSON document on stdout, which the test asserts on; a failure prints
// {"error": ...} and exits 1.
//
//   node ts_client.mjs token URL CLIENT                 bearer token in $MCP_TOKEN
//   node ts_client.mjs oauth-start URL STATE_DIR        prints the authorization URL the person must visit
//   node ts_client.mjs oauth-finish URL STATE_DIR       $OAUTH_CALLBACK: the redirect URL the browser came back to
//   node ts_client.mjs cancel URL CLIENT                bearer token in $MCP_TOKEN; aborts a long call, prints
//                                                        {"aborted": ...}, then waits for a line on stdin to close
//
// CLIENT is one of the keys of CLIENTS below: the v2 client (`@modelcontextprotocol/client`, the SDK's current line)
// pinned to the 2026-07-28 protocol (server/discover, no initialize) or in its legacy mode (the 2025 initialize
// handshake, 2025-11-25), and the v1 package (`@modelcontextprotocol/sdk`, 2025-11-25 at most), which most
// deployed clients still run. The OAuth path uses the v2 client's auth helpers with an OAuthClientProvider whose
// state lives in STATE_DIR, so that the flow survives the gap between the two invocations (the person at the
// browser, played by the test).

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
    Client as ClientV2,
    StreamableHTTPClientTransport as TransportV2,
    UnauthorizedError,
} from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const REDIRECT_URI = 'http://127.0.0.1:9/callback'; // tests/security/oauth_flow.py's, where its Browser expects it
const CHORALE = { source: 'bach/bwv66.6', source_type: 'corpus' };

function packageVersion(name) {
    const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    return JSON.parse(readFileSync(url, 'utf8')).version;
}

/** A fetch that records what went over the wire: method, path, JSON-RPC method, protocol header and status. */
function recordingFetch(log) {
    return async (input, init = {}) => {
        const request = new Request(input, init);
        let rpc;
        if (typeof init.body === 'string') {
            try {
                rpc = JSON.parse(init.body).method;
            } catch {
                rpc = undefined; // a form body (the token endpoint)
            }
        }
        const response = await fetch(input, init);
        log.push({
            method: request.method,
            path: new URL(request.url).pathname,
            rpc,
            protocolVersion: request.headers.get('mcp-protocol-version') ?? undefined,
            status: response.status,
            wwwAuthenticate: response.headers.get('www-authenticate') ?? undefined,
        });
        return response;
    };
}

const CLIENTS = {
    // The v2 client pinned to the modern era: connect() must negotiate 2026-07-28 through server/discover, or fail.
    'v2-2026-07-28': {
        sdk: '@modelcontextprotocol/client',
        make: () =>
            new ClientV2(
                { name: 'music21-ts-interop', version: '1.0.0' },
                { versionNegotiation: { mode: { pin: '2026-07-28' } } }
            ),
        transport: (url, options) => new TransportV2(url, options),
        protocolVersion: (client) => client.getNegotiatedProtocolVersion(),
    },
    // The same client in its legacy mode: the 2025 initialize handshake.
    'v2-2025-11-25': {
        sdk: '@modelcontextprotocol/client',
        make: () =>
            new ClientV2({ name: 'music21-ts-interop', version: '1.0.0' }, { versionNegotiation: { mode: 'legacy' } }),
        transport: (url, options) => new TransportV2(url, options),
        protocolVersion: (client) => client.getNegotiatedProtocolVersion(),
    },
    // The v1 package, which speaks up to 2025-11-25 and knows nothing of server/discover.
    'v1-2025-11-25': {
        sdk: '@modelcontextprotocol/sdk',
        make: () => new ClientV1({ name: 'music21-ts-interop', version: '1.0.0' }),
        transport: (url, options) => new TransportV1(url, options),
        protocolVersion: (_client, transport) => transport.protocolVersion,
    },
};

function text(result) {
    return (result.content ?? [])
        .filter((c) => c.type === 'text')
        .map((c) => c.text)
        .join('\n');
}

/** Connect with `kind`, run the conversation of a chorale, and describe what came back. */
async function conversation(url, kind, transportOptions, { scoreId = 'chorale', full = true } = {}) {
    const spec = CLIENTS[kind];
    const wire = [];
    const client = spec.make();
    const transport = spec.transport(new URL(url), { ...transportOptions, fetch: recordingFetch(wire) });
    await client.connect(transport);
    try {
        const summary = {
            client: kind,
            sdk: spec.sdk,
            sdkVersion: packageVersion(spec.sdk),
            protocolVersion: spec.protocolVersion(client, transport),
            server: client.getServerVersion()?.name,
        };
        summary.tools = (await client.listTools()).tools.map((t) => t.name).sort();

        const imported = await client.callTool({ name: 'import_score', arguments: { score_id: scoreId, ...CHORALE } });
        summary.import = { isError: imported.isError ?? false, structured: imported.structuredContent, text: text(imported) };

        const key = await client.callTool({ name: 'key_analysis', arguments: { score_id: scoreId } });
        summary.key = { isError: key.isError ?? false, key: key.structuredContent?.key, text: text(key) };

        if (full) {
            const rendered = await client.callTool({
                name: 'render_score',
                arguments: { score_id: scoreId, measure_end: 2 },
            });
            const image = (rendered.content ?? []).find((c) => c.type === 'image');
            summary.render = {
                isError: rendered.isError ?? false,
                contentTypes: (rendered.content ?? []).map((c) => c.type),
                image: image && {
                    mimeType: image.mimeType,
                    svgHead: Buffer.from(image.data, 'base64').toString('utf8').slice(0, 300),
                },
            };

            const resource = await client.readResource({ uri: `score://${scoreId}` });
            const contents = resource.contents[0];
            summary.resource = {
                uri: contents.uri,
                mimeType: contents.mimeType,
                hasScorePartwise: typeof contents.text === 'string' && contents.text.includes('<score-partwise'),
            };
        }
        summary.wire = wire;
        return summary;
    } finally {
        await client.close();
    }
}

/** Abort a long call (analyze_corpus over Bach's works) at its first progress notification, as an application does
 *  when its user stops it; say so on stdout, and keep the connection open until a line comes on stdin: meanwhile
 *  the test looks at whether the job stopped, which then only the client's cancellation can have done. */
async function cancelling(url, kind, transportOptions) {
    const spec = CLIENTS[kind];
    const wire = [];
    const client = spec.make();
    const transport = spec.transport(new URL(url), { ...transportOptions, fetch: recordingFetch(wire) });
    await client.connect(transport);
    try {
        const abort = new AbortController();
        const progress = [];
        const options = {
            signal: abort.signal,
            timeout: 600_000,
            onprogress: (notification) => {
                progress.push(notification.progress);
                abort.abort('stopped by the user');
            },
        };
        const params = { name: 'analyze_corpus', arguments: { composer: 'bach', limit: 400 } };
        let error;
        try {
            // the v1 client takes a result schema before the options
            await (kind.startsWith('v1') ? client.callTool(params, undefined, options) : client.callTool(params, options));
        } catch (caught) {
            error = String(caught);
        }
        process.stdout.write(`${JSON.stringify({ aborted: abort.signal.aborted, error })}\n`);
        await new Promise((resolve) => process.stdin.once('data', resolve));
        return { progress, callError: error, wire };
    } finally {
        await client.close();
    }
}

/** The OAuth client's side of the flow, kept in a directory between the two invocations. */
class FileOAuthProvider {
    constructor(dir) {
        this.dir = dir;
        mkdirSync(dir, { recursive: true });
    }

    read(name) {
        const path = join(this.dir, `${name}.json`);
        return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined;
    }

    write(name, value) {
        writeFileSync(join(this.dir, `${name}.json`), JSON.stringify(value), { mode: 0o600 });
    }

    get redirectUrl() {
        return REDIRECT_URI;
    }

    get clientMetadata() {
        return {
            client_name: 'music21 TypeScript SDK client',
            redirect_uris: [REDIRECT_URI],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
            scope: 'music21:read music21:write',
        };
    }

    state() {
        const state = randomBytes(16).toString('base64url');
        this.write('state', state);
        return state;
    }

    clientInformation() {
        return this.read('client');
    }

    saveClientInformation(info) {
        this.write('client', info);
    }

    tokens() {
        return this.read('tokens');
    }

    saveTokens(tokens) {
        this.write('tokens', tokens);
    }

    redirectToAuthorization(url) {
        this.write('authorization_url', url.toString());
    }

    saveCodeVerifier(verifier) {
        this.write('verifier', verifier);
    }

    codeVerifier() {
        const verifier = this.read('verifier');
        if (!verifier) throw new Error('no PKCE code verifier saved: run oauth-start first');
        return verifier;
    }

    saveDiscoveryState(state) {
        this.write('discovery', state);
    }

    discoveryState() {
        return this.read('discovery');
    }

    invalidateCredentials(scope) {
        this.write(`invalidated-${scope}`, true);
    }
}

/** Step 1: with only the /mcp URL, connect; the 401 leads the SDK through discovery and registration to the
 *  authorization URL (PKCE S256), which the provider keeps and this prints. */
async function oauthStart(url, dir) {
    const provider = new FileOAuthProvider(dir);
    const wire = [];
    const client = CLIENTS['v2-2026-07-28'].make();
    const transport = new TransportV2(new URL(url), { authProvider: provider, fetch: recordingFetch(wire) });
    let unauthorized = false;
    try {
        await client.connect(transport);
    } catch (error) {
        if (!(error instanceof UnauthorizedError)) throw error;
        unauthorized = true;
    } finally {
        await client.close().catch(() => {});
    }
    const authorizationUrl = provider.read('authorization_url');
    if (!unauthorized || !authorizationUrl) throw new Error('the server let an unauthenticated client in');
    return { authorizationUrl, clientId: provider.clientInformation()?.client_id, wire };
}

/** Step 2: the browser came back to the redirect URI; exchange its code (checking state and RFC 9207 `iss`), then
 *  work with the token the SDK keeps, in both protocol eras. */
async function oauthFinish(url, dir, callback) {
    const provider = new FileOAuthProvider(dir);
    const params = new URL(callback).searchParams;
    if (params.get('error')) throw new Error(`authorization refused: ${params.get('error')}`);
    if (params.get('state') !== provider.read('state')) throw new Error('state mismatch in the authorization response');
    const wire = [];
    const transport = new TransportV2(new URL(url), { authProvider: provider, fetch: recordingFetch(wire) });
    await transport.finishAuth(params.get('code'), params.get('iss') ?? undefined);
    const tokens = provider.tokens();
    const runs = [];
    for (const kind of ['v2-2026-07-28', 'v2-2025-11-25']) {
        runs.push(await conversation(url, kind, { authProvider: provider }, { scoreId: `chorale-${kind}`, full: false }));
    }
    return {
        token: { tokenType: tokens?.token_type, scope: tokens?.scope, hasRefreshToken: Boolean(tokens?.refresh_token) },
        exchange: wire,
        runs,
    };
}

async function main() {
    const [mode, url, arg] = process.argv.slice(2);
    let out;
    if (mode === 'token') {
        const token = process.env.MCP_TOKEN;
        if (!token) throw new Error('MCP_TOKEN is not set');
        if (!CLIENTS[arg]) throw new Error(`unknown client ${arg}; one of ${Object.keys(CLIENTS).join(', ')}`);
        out = await conversation(url, arg, { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
    } else if (mode === 'cancel') {
        out = await cancelling(url, arg, { requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_TOKEN}` } } });
    } else if (mode === 'oauth-start') {
        out = await oauthStart(url, arg);
    } else if (mode === 'oauth-finish') {
        out = await oauthFinish(url, arg, process.env.OAUTH_CALLBACK ?? '');
    } else {
        throw new Error(`unknown mode ${mode}`);
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((error) => {
    process.stdout.write(`${JSON.stringify({ error: String(error?.stack ?? error) })}\n`);
    process.exit(1);
});
