// containers.cjs - kilnd's OpenAI Containers API driven by the official `openai` SDK, as an
// agent platform would use it: create, retrieve, list (paged), upload a file, list, retrieve
// and download it, delete it, delete the container.  Run by
// tests/integration/test_openai_containers.py with NODE_PATH at the node_modules that
// scripts/install-deps put in the cache; KILND_URL (…/v1), KILND_KEY (an agent key) and
// OTHER_CONTAINER (a container the test made before) in the environment.  Prints one JSON line
// with what it saw; any failed check throws and exits non-zero.
'use strict';

const assert = require('node:assert/strict');
const openai = require('openai');

const OpenAI = openai.OpenAI || openai.default;
const { toFile, NotFoundError } = openai;

const CSV = 'city,sales\nOslo,10\nLima,7\n';

async function all(page) {
	const out = [];

	for await (const item of page)
		out.push(item);
	return out;
}

async function main() {
	const client = new OpenAI({ baseURL: process.env.KILND_URL, apiKey: process.env.KILND_KEY,
				    maxRetries: 0, timeout: 900 * 1000 });
	const other = process.env.OTHER_CONTAINER;

	const c = await client.containers.create({
		name: 'sdk-flow', memory_limit: '1g',
		expires_after: { anchor: 'last_active_at', minutes: 30 } });
	assert.equal(c.object, 'container');
	assert.equal(c.name, 'sdk-flow');
	assert.equal(c.status, 'running');
	assert.deepEqual(c.expires_after, { anchor: 'last_active_at', minutes: 30 });
	assert.equal(c.memory_limit, '1g');
	assert.ok(Number.isInteger(c.created_at) && Number.isInteger(c.last_active_at));
	assert.ok(Math.abs(c.created_at - Date.now() / 1000) < 900);

	const got = await client.containers.retrieve(c.id);
	assert.equal(got.id, c.id);
	assert.equal(got.name, 'sdk-flow');

	// Activity on the other container keeps it inside its short idle window while we list.
	await client.containers.files.list(other);
	const desc = await all(client.containers.list({ limit: 1 }));
	const asc = await all(client.containers.list({ limit: 1, order: 'asc' }));
	assert.deepEqual(desc.map((x) => x.id), [c.id, other]);
	assert.deepEqual(asc.map((x) => x.id), [other, c.id]);
	const first = await client.containers.list({ limit: 1 });
	assert.equal(first.has_more, true);
	assert.equal(first.data.length, 1);
	const named = await all(client.containers.list({ name: 'sdk-flow' }));
	assert.deepEqual(named.map((x) => x.id), [c.id]);

	const f = await client.containers.files.create(c.id, {
		file: await toFile(Buffer.from(CSV), 'sales.csv', { type: 'text/csv' }) });
	assert.equal(f.object, 'container.file');
	assert.equal(f.container_id, c.id);
	assert.equal(f.path, '/mnt/data/sales.csv');
	assert.equal(f.bytes, CSV.length);
	assert.equal(f.source, 'user');

	const files = await all(client.containers.files.list(c.id));
	assert.deepEqual(files.map((x) => [x.id, x.path, x.bytes]), [[f.id, f.path, CSV.length]]);
	const one = await client.containers.files.retrieve(f.id, { container_id: c.id });
	assert.equal(one.path, '/mnt/data/sales.csv');
	const content = await client.containers.files.content.retrieve(f.id,
								       { container_id: c.id });
	assert.equal(Buffer.from(await content.arrayBuffer()).toString(), CSV);

	await client.containers.files.delete(f.id, { container_id: c.id });
	assert.deepEqual(await all(client.containers.files.list(c.id)), []);
	await assert.rejects(client.containers.files.retrieve(f.id, { container_id: c.id }),
			     NotFoundError);

	await client.containers.delete(c.id);
	await assert.rejects(client.containers.retrieve(c.id), NotFoundError);
	const left = await all(client.containers.list());
	assert.deepEqual(left.map((x) => x.id), [other]);

	console.log(JSON.stringify({ container: c.id, file: f.id, listed: desc.length }));
}

main().catch((e) => {
	console.error(e && e.stack ? e.stack : e);
	process.exit(1);
});
