// SCIMMY reference server for scripts/bench/run: the SCIMMY library (scimmy + scimmy-routers
// on express) serving /scim/v2/Users from an in-memory array. It is the "what a popular
// off-the-shelf SCIM implementation does on this machine" reference; no database, so it is
// an optimistic reference for pimgate (which reads PostgreSQL on every request).
//
// Usage: node scripts/bench/scimmy_server.js [PORT]   (or SCIMMY_PORT; default 0 = any free)
//   SCIMMY_TOKEN   bearer token required on every request (default "bench-scimmy-token")
//   SCIMMY_USERS   how many users to seed (default 1; ids are user-1 .. user-N)
// Needs the packages in NODE_PATH or resolvable from the working directory; scripts/bench/run
// installs them into .local/bench-npm and sets NODE_PATH.
// Prints "listening on http://127.0.0.1:PORT" once bound (the runner parses it).

"use strict";

const { createRequire } = require("node:module");
const path = require("node:path");
// Resolve the packages from NODE_PATH's first entry (the local npm prefix), not from this file.
const base = (process.env.NODE_PATH || "").split(path.delimiter)[0] || process.cwd();
const req = createRequire(path.join(base, "noop.js"));
const express = req("express");
// Both ship CommonJS builds whose main export is `default` (ES-module interop).
const SCIMMY = req("scimmy").default;
const SCIMMYRouters = req("scimmy-routers").default;

const PORT = Number(process.argv[2] || process.env.SCIMMY_PORT || 0);
const TOKEN = process.env.SCIMMY_TOKEN || "bench-scimmy-token";
const SEED = Number(process.env.SCIMMY_USERS || 1);

// The in-memory store: an array of user objects, with an id index and a userName index so a
// read by id and the uniqueness check are O(1), like pimgate's indexed lookups.
const users = [];
const byId = new Map();
const byName = new Map();
let next = 0;
const lc = (s) => String(s).toLowerCase();
function put(user) {
    const old = byId.get(user.id);
    if (old) {
        users[users.indexOf(old)] = user;
        byName.delete(lc(old.userName));
    } else users.push(user);
    byId.set(user.id, user);
    byName.set(lc(user.userName), user);
    return user;
}
function seedUser() {
    next += 1;
    const now = new Date();
    return put({
        id: `user-${next}`,
        userName: `user-${next}@example.com`,
        externalId: `ext-${next}`,
        active: true,
        name: { givenName: "Bench", familyName: `User ${next}` },
        emails: [{ value: `user-${next}@example.com`, type: "work", primary: true }],
        meta: { created: now, lastModified: now },
    });
}
for (let i = 0; i < SEED; i++) seedUser();

SCIMMY.Resources.declare(SCIMMY.Resources.User)
    // Read: one user by id, or the (filtered) list.
    .egress((resource) => {
        if (resource.id) {
            const u = byId.get(resource.id);
            if (!u) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
            return u;
        }
        return resource.filter ? resource.filter.match(users) : users;
    })
    // Create (no id) or replace (id): store the validated instance.
    .ingress((resource, instance) => {
        const now = new Date();
        if (resource.id) {
            const old = byId.get(resource.id);
            if (!old) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
            return put({ ...instance, id: old.id, meta: { created: old.meta.created, lastModified: now } });
        }
        if (byName.has(lc(instance.userName)))
            throw new SCIMMY.Types.Error(409, "uniqueness", "userName already exists");
        next += 1;
        return put({ ...instance, id: `user-${next}`, meta: { created: now, lastModified: now } });
    })
    // Delete.
    .degress((resource) => {
        const old = byId.get(resource.id);
        if (!old) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
        byId.delete(resource.id);
        byName.delete(lc(old.userName));
        users.splice(users.indexOf(old), 1);
    });

const app = express();
app.use(
    "/scim/v2",
    new SCIMMYRouters({
        type: "bearer",
        docUri: "https://example.com/bench",
        handler: (request) => {
            if (request.header("Authorization") !== `Bearer ${TOKEN}`) throw new Error("Authorization failed");
            return "bench";
        },
    }),
);

const server = app.listen(PORT, "127.0.0.1", () => {
    const { port } = server.address();
    console.log(`listening on http://127.0.0.1:${port}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.close(() => process.exit(0)));
