// node_kernel.js - the Node.js side of a kiln code context (src/guest/context.c).
//
// The counterpart of python_kernel.py, with the same fds: kiln-init starts `node -e BOOT` as the
// context's user with fd 3 a listening unix socket (/run/kiln/contexts/ID.sock), fd 1 the pipe
// on which we say "ready", fd 4 this file, which BOOT reads and evaluates to the function below.
// Each connection carries one CONTEXT_RUN frame and gets back STDOUT/STDERR, RESULT, EXCEPTION
// frames and a final DONE.  Cells run as scripts in this one global context, so what a cell
// declares (var, function, let/const, globals) is there for the next; the value of the cell's
// last expression is its result, and a promise as that value is awaited.  SIGINT (interrupt,
// timeout) breaks a synchronous loop (vm's breakOnSigint) or abandons the awaited promise.
// What we print goes through process.stdout/stderr, which we replace; a child process that
// inherits fds 1 and 2 is not heard (capture its output, e.g. execSync's return value).
// kiln-init treats whatever we send as untrusted: user code runs in this process.
(function (require) {
	'use strict';
	const fs = require('fs');
	const net = require('net');
	const util = require('util');
	const vm = require('vm');

	const MSG_CONTEXT_RUN = 15, MSG_STARTED = 32, MSG_STDOUT = 35, MSG_STDERR = 36;
	const MSG_RESULT = 46, MSG_EXCEPTION = 47, MSG_DONE = 48;
	const TAG_DATA = 13, TAG_CODE = 45, TAG_MIME = 46, TAG_INDEX = 47;
	const TAG_ENAME = 48, TAG_EVALUE = 49, TAG_TRACEBACK = 50;
	const TAG_EXEC_COUNT = 51, TAG_STATUS = 52;
	const CELL_OK = 0, CELL_ERROR = 1, CELL_INTERRUPTED = 2;
	const MAX_PAYLOAD = 1 << 20;
	const MAX_RESULT = MAX_PAYLOAD - 4096;	// room for a result's MIME and field headers
	const CHUNK = 64 << 10;
	const KERNEL_FILE = '<kiln-kernel>';

	let conn = null;	// the host connection of the running cell, if any
	let count = 0;
	let interrupt = null;	// rejects the promise a cell's result is awaiting

	function u32(v) {
		const b = Buffer.alloc(4);
		b.writeUInt32LE(v, 0);
		return b;
	}

	function frame(type, fields) {
		const parts = [Buffer.alloc(8)];
		let len = 0;
		for (const [tag, val] of fields) {
			const h = Buffer.alloc(6);
			h.writeUInt16LE(tag, 0);
			h.writeUInt32LE(val.length, 2);
			parts.push(h, val);
			len += 6 + val.length;
		}
		parts[0].writeUInt32LE(len, 0);
		parts[0].writeUInt8(1, 4);
		parts[0].writeUInt8(type, 5);
		return Buffer.concat(parts);
	}

	function send(type, fields) {
		if (conn && !conn.destroyed)
			conn.write(frame(type, fields));	// the host gone: the cell runs on, unheard
	}

	// process.stdout/stderr (and so console.*) stream to the host as the cell writes.
	function capture(stream, type) {
		stream.write = function (chunk, encoding, cb) {
			if (typeof encoding === 'function') {
				cb = encoding;
				encoding = undefined;
			}
			const buf = Buffer.isBuffer(chunk) ? chunk :
				chunk instanceof Uint8Array ? Buffer.from(chunk) :
				Buffer.from(String(chunk), encoding || 'utf8');
			for (let off = 0; off < buf.length; off += CHUNK)
				send(type, [[TAG_DATA, buf.subarray(off, off + CHUNK)]]);
			if (cb)
				process.nextTick(cb);
			return true;
		};
	}

	// One frame from c, or null on EOF or a malformed header.
	function readFrame(c) {
		return new Promise((resolve) => {
			let buf = Buffer.alloc(0);
			const done = (v) => {
				c.off('data', onData);
				c.off('end', onEnd);
				c.off('error', onEnd);
				c.pause();
				resolve(v);
			};
			const onEnd = () => done(null);
			const onData = (d) => {
				buf = Buffer.concat([buf, d]);
				if (buf.length < 8)
					return;
				const len = buf.readUInt32LE(0);
				if (buf.readUInt8(4) !== 1 || len > MAX_PAYLOAD)
					return done(null);
				if (buf.length >= 8 + len)
					done({ type: buf.readUInt8(5), payload: buf.subarray(8, 8 + len) });
			};
			c.on('data', onData);
			c.on('end', onEnd);
			c.on('error', onEnd);
		});
	}

	function findField(payload, want) {
		let off = 0;
		while (off + 6 <= payload.length) {
			const tag = payload.readUInt16LE(off), n = payload.readUInt32LE(off + 2);
			if (off + 6 + n > payload.length)
				return null;
			if (tag === want)
				return payload.subarray(off + 6, off + 6 + n);
			off += 6 + n;
		}
		return null;
	}

	function isPlain(v) {
		if (Array.isArray(v))
			return true;
		if (v === null || typeof v !== 'object')
			return false;
		const proto = Object.getPrototypeOf(v);
		return proto === Object.prototype || proto === null;
	}

	// The value's representations, most generic first.
	function bundle(value) {
		const out = [];
		const add = (mime, fn) => {
			let data;
			try {
				data = fn();
			} catch (e) {
				return;
			}
			if (typeof data !== 'string')
				return;
			const buf = Buffer.from(data, 'utf8');
			if (buf.length > MAX_RESULT) {
				process.stderr.write(`kiln: ${mime} result of ${buf.length} bytes is ` +
						     `over the limit (${MAX_RESULT}); dropped\n`);
				return;
			}
			out.push([mime, buf]);
		};
		add('text/plain', () => util.inspect(value, { depth: 4 }));
		if (isPlain(value))
			add('application/json', () => JSON.stringify(value));
		return out;
	}

	// A string from fn, or fallback: user values can throw from getters, proxies, toString.
	function str(fn, fallback) {
		try {
			const v = fn();
			return typeof v === 'string' ? v : fallback;
		} catch (e) {
			return fallback;
		}
	}

	function sendException(e) {
		const isError = str(() => (e instanceof Error ? 'y' : ''), '') === 'y';
		const name = (isError ? str(() => e.name, 'Error') : typeof e) || 'Error';
		const value = isError ? str(() => e.message, '') :
			str(() => String(e), str(() => Object.prototype.toString.call(e), '?'));
		const stack = isError ? str(() => e.stack, `${name}: ${value}`) : `${name}: ${value}`;
		// Our own frames and node's are not the user's.
		const lines = stack.split('\n').filter((l) => !l.includes(KERNEL_FILE) &&
							  !l.includes('node:internal'));
		const ename = Buffer.from(name, 'utf8').subarray(0, 255);
		const evalue = Buffer.from(value, 'utf8').subarray(0, 65536);
		const fields = [[TAG_ENAME, ename], [TAG_EVALUE, evalue]];
		let size = ename.length + evalue.length + 12;
		for (const line of lines) {
			const data = Buffer.from(line, 'utf8').subarray(0, 65536);
			size += data.length + 6;
			if (size > MAX_RESULT)
				break;
			fields.push([TAG_TRACEBACK, data]);
		}
		send(MSG_EXCEPTION, fields);
	}

	class Interrupted extends Error {
		constructor() {
			super('the cell was interrupted');
			this.name = 'Interrupted';
		}
	}

	function awaitInterruptibly(promise) {
		return new Promise((resolve, reject) => {
			interrupt = reject;
			promise.then(resolve, reject);
		}).finally(() => {
			interrupt = null;
		});
	}

	function interrupted(e) {
		return str(() => (e instanceof Interrupted ? 'y' : e.code), '') === 'y' ||
		       str(() => e.code, '') === 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
	}

	async function runCell(code) {
		count++;
		let value;
		try {
			const script = new vm.Script(code, { filename: `<cell ${count}>` });
			value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
			if (value !== null && (typeof value === 'object' || typeof value === 'function') &&
			    typeof value.then === 'function')
				value = await awaitInterruptibly(Promise.resolve(value));
		} catch (e) {
			if (interrupted(e)) {
				sendException(new Interrupted());
				return CELL_INTERRUPTED;
			}
			sendException(e);
			return CELL_ERROR;
		}
		if (value !== undefined) {
			globalThis._ = value;
			let results = [];
			try {
				results = bundle(value);
			} catch (e) {	// a Proxy can throw from anything
				process.stderr.write('kiln: cannot represent the result\n');
			}
			results.forEach(([mime, data]) => {
				send(MSG_RESULT, [[TAG_MIME, Buffer.from(mime)], [TAG_DATA, data],
						  [TAG_INDEX, u32(0)]]);
			});
		}
		return CELL_OK;
	}

	async function handle(c) {
		c.on('error', () => {});
		const req = await readFrame(c);
		const code = req && req.type === MSG_CONTEXT_RUN ? findField(req.payload, TAG_CODE) : null;
		if (code === null) {
			c.destroy();
			return;
		}
		// Blocking writes: a cell printing in a loop waits for the host rather than queueing
		// its output in memory without bound.
		if (c._handle && typeof c._handle.setBlocking === 'function')
			c._handle.setBlocking(true);
		conn = c;
		// The agent times the cell from here: runs queued behind another cell wait untimed.
		send(MSG_STARTED, []);
		const status = await runCell(code.toString('utf8'));
		send(MSG_DONE, [[TAG_EXEC_COUNT, u32(count)], [TAG_STATUS, Buffer.from([status])]]);
		conn = null;
		c.end();
	}

	// One cell at a time, in the order the connections came.
	const pending = [];
	let busy = false;
	async function next() {
		if (busy)
			return;
		busy = true;
		try {
			while (pending.length) {
				const c = pending.shift();
				try {
					await handle(c);
				} catch (e) {	// never leave the queue stuck behind one cell
					conn = null;
					c.destroy();
				}
			}
		} finally {
			busy = false;
		}
	}

	process.on('SIGINT', () => {
		// Only a running cell is interrupted: a signal between cells is nothing.
		if (interrupt)
			interrupt(new Interrupted());
	});
	// A callback a cell left behind throws later: say so, keep the context.
	process.on('uncaughtException', (e) => {
		process.stderr.write(`Uncaught ${e instanceof Error ? e.stack : String(e)}\n`);
	});
	process.on('unhandledRejection', (e) => {
		process.stderr.write(`Unhandled rejection: ${e instanceof Error ? e.stack : String(e)}\n`);
	});

	globalThis.require = require;
	const server = net.createServer((c) => {
		pending.push(c);
		next();
	});
	server.listen({ fd: 3 }, () => {
		fs.writeSync(1, 'ready\n');
		capture(process.stdout, MSG_STDOUT);
		capture(process.stderr, MSG_STDERR);
	});
})
