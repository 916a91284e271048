"use strict";
// Starts a hoodiecrow IMAP server (an in-memory server written in node) for
// mailgrab's integration tests, from a JSON config named on the command line:
//
//   {
//     "host": "127.0.0.1", "port": 0,            // 0: pick a free port
//     "key": "server.key", "cert": "server.pem", // TLS from the first byte
//     "plugins": ["X-GM-EXT-1", "SPECIAL-USE", ...],
//     "users": {"alice": {"password": "secret",
//                         "xoauth2": {"accessToken": "t", "sessionTimeout": 3600000}}},
//     "separator": "/",
//     "max_sessions": 2,   // more logged-in sessions get max_sessions_reply
//     "max_sessions_reply": "NO [ALERT] Too many simultaneous connections. (Failure)",
//     "command_log": "commands.jsonl",  // each command as a JSON line (no secrets)
//     "folders": {
//       "INBOX": {"uidvalidity": 7, "highestmodseq": 9, "messages": [MESSAGE, ...]},
//       "Työ/Kuitit": {"special_use": "\\Archive", "messages": [...],
//                      "refuse": "NO [NOPERM] Permission denied"}
//     }
//   }
//
// MESSAGE: {"raw": base64 of the message, "uid": n, "flags": ["\\Seen"],
//           "internaldate": "2024-01-02T03:04:05Z", "labels": [...],
//           "msgid": "decimal", "thrid": "decimal", "modseq": n}
//
// With CONDSTORE a message without "modseq" gets the folder's next one when
// the server starts; given ones (and "highestmodseq") let a restarted server
// say what changed, as Gmail raises a message's MODSEQ when its labels do.
//
// Folder names are written in UTF-8 and served as the raw UTF-8 bytes (as
// hoodiecrow, GNU imap4d and some Cyrus set-ups do), not in modified UTF-7.
// "refuse" answers EXAMINE and SELECT of that folder with the given tagged
// response, as a server does for a folder whose ACL denies reading.
//
// Prints "LISTENING <port>" on stdout once it accepts connections. State is
// in memory only: a restart serves the config again.

const fs = require("fs");
const path = require("path");

// The project-local install (scripts/install-deps) lives beside this file's
// parent directory; NODE_PATH may name another.
const modules = path.join(__dirname, "..", "node", "node_modules");
const hoodiecrow = require(fs.existsSync(modules) ? path.join(modules, "hoodiecrow-imap")
                                                  : "hoodiecrow-imap");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

// hoodiecrow reads and writes the wire as "binary" (latin1) strings.
function wire(s) {
    return Buffer.from(s, "utf8").toString("binary");
}

function message(m) {
    const out = {
        raw: Buffer.from(m.raw, "base64").toString("binary"),
        flags: m.flags || [],
    };
    if (m.uid)
        out.uid = m.uid;
    if (m.internaldate)
        out.internaldate = new Date(m.internaldate);
    if (m.labels) {
        out["X-GM-LABELS"] = m.labels.map(wire);
        out.configuredLabels = out["X-GM-LABELS"].slice();
    }
    if (m.msgid)
        out["X-GM-MSGID"] = m.msgid;
    if (m.thrid)
        out["X-GM-THRID"] = m.thrid;
    if (m.modseq)
        out.MODSEQ = m.modseq;
    return out;
}

function folder(f) {
    const out = {messages: (f.messages || []).map(message)};
    if (f.uidvalidity)
        out.uidvalidity = f.uidvalidity;
    if (f.uidnext)
        out.uidnext = f.uidnext;
    if (f.special_use)
        out["special-use"] = f.special_use;
    if (f.flags)
        out.flags = f.flags;
    if (f.refuse)
        out.refuse = f.refuse;
    if (f.highestmodseq)
        out.HIGHESTMODSEQ = f.highestmodseq;
    return out;
}

const sep = config.separator || "/";
const storage = {INBOX: {}, "": {folders: {}, separator: sep, type: "personal"}};
for (const [name, f] of Object.entries(config.folders || {})) {
    if (name.toUpperCase() === "INBOX") {
        storage.INBOX = folder(f);
        continue;
    }
    // "A/B" is folder B inside folder A; a parent not configured is only a
    // level of the hierarchy (\Noselect), as Gmail's "[Gmail]".
    let parent = storage[""];
    const parts = wire(name).split(sep);
    parts.forEach((part, i) => {
        parent.folders = parent.folders || {};
        if (i === parts.length - 1)
            parent.folders[part] = Object.assign(parent.folders[part] || {}, folder(f));
        else
            parent.folders[part] = parent.folders[part] || {messages: [], flags: ["\\Noselect"]};
        parent = parent.folders[part];
    });
}

const users = {};
for (const [user, u] of Object.entries(config.users || {})) {
    users[user] = {password: u.password};
    if (u.xoauth2)
        users[user].xoauth2 = u.xoauth2;
}

const plugins = config.plugins || [];
const server = hoodiecrow({
    secureConnection: true,
    credentials: {key: fs.readFileSync(config.key), cert: fs.readFileSync(config.cert)},
    plugins: plugins,
    users: users,
    storage: storage,
});

if (plugins.includes("X-GM-EXT-1")) {
    // The plugin implements X-GM-MSGID and X-GM-LABELS but never says so,
    // and has no X-GM-THRID: one thread per message unless configured.
    server.registerCapability("X-GM-EXT-1");
    server.fetchHandlers["X-GM-THRID"] = function(connection, m) {
        return {type: "ATOM", value: m["X-GM-THRID"] || m["X-GM-MSGID"]};
    };
    // Gmail serves the labels a message has; the plugin adds one for each
    // folder holding a copy (\All for All Mail, \Flagged for Starred).
    // Messages with configured labels get exactly those.
    for (const box of Object.values(server.folderCache))
        for (const m of box.messages || [])
            if (m.configuredLabels)
                m["X-GM-LABELS"] = m.configuredLabels.slice();
    // A label that is no atom (a space in it) goes as a quoted string, as
    // Gmail sends "Muy Importante".
    server.fetchHandlers["X-GM-LABELS"] = function(connection, m) {
        return m["X-GM-LABELS"].map((label) => ({
            type: /^[\\]?[A-Za-z0-9&+,\-_./]+$/.test(label) ? "ATOM" : "STRING",
            value: label,
        }));
    };
}

if (plugins.includes("CONDSTORE")) {
    // The plugin applies CHANGEDSINCE to FETCH only; hoodiecrow's UID FETCH
    // ignores it and answers for every message. Ask for the UIDs of the
    // range whose MODSEQ is higher instead, as a CONDSTORE server answers.
    const uidFetch = server.getCommandHandler("UID FETCH");
    server.setCommandHandler("UID FETCH", function(connection, parsed, data, callback) {
        const mods = parsed.attributes && parsed.attributes[2];
        const i = Array.isArray(mods) ? mods.findIndex(
            (a) => a && a.type === "ATOM" && a.value.toUpperCase() === "CHANGEDSINCE") : -1;
        if (i < 0 || connection.state !== "Selected" || !parsed.attributes[0])
            return uidFetch(connection, parsed, data, callback);
        const since = Number(mods[i + 1] && mods[i + 1].value);
        const uids = server.getMessageRange(connection.selectedMailbox,
                                            parsed.attributes[0].value, true)
                         .filter(([, m]) => (m.MODSEQ || 0) > since)
                         .map(([, m]) => m.uid);
        parsed.attributes.splice(2, 1);
        if (!uids.length) {
            connection.send({tag: parsed.tag, command: "OK",
                             attributes: [{type: "TEXT", value: "UID FETCH Completed"}]},
                            "UID FETCH", parsed, data);
            return callback();
        }
        parsed.attributes[0] = {type: "SEQUENCE", value: uids.join(",")};
        return uidFetch(connection, parsed, data, callback);
    });
}

// Answer a command with a tagged reply such as "NO [NOPERM] Permission denied".
function answer(connection, parsed, data, reply, command, callback) {
    const [state, ...text] = reply.split(" ");
    connection.send({
        tag: parsed.tag,
        command: state,
        attributes: [{type: "TEXT", value: text.join(" ")}],
    }, command + " FAILED", parsed, data);
    return callback();
}

function refusing(command) {
    const original = server.getCommandHandler(command);
    return function(connection, parsed, data, callback) {
        const arg = parsed.attributes && parsed.attributes[0];
        const box = arg && typeof arg.value === "string" ? server.getMailbox(arg.value) : null;
        if (box && box.refuse && ["Authenticated", "Selected"].includes(connection.state))
            return answer(connection, parsed, data, box.refuse, command, callback);
        return original(connection, parsed, data, callback);
    };
}
server.setCommandHandler("EXAMINE", refusing("EXAMINE"));
server.setCommandHandler("SELECT", refusing("SELECT"));

// A limit on logged-in sessions per account, answered as Gmail does.
const live = new Set();
server.connectionHandlers.push((connection) => {
    live.add(connection);
    connection.socket.on("close", () => live.delete(connection));
});

function limited(command) {
    const original = server.getCommandHandler(command);
    return function(connection, parsed, data, callback) {
        const others = [...live].filter(
            (c) => c !== connection && c.state !== "Not Authenticated").length;
        if (config.max_sessions && others >= config.max_sessions)
            return answer(connection, parsed, data,
                          config.max_sessions_reply ||
                              "NO [ALERT] Too many simultaneous connections. (Failure)",
                          command, callback);
        return original(connection, parsed, data, callback);
    };
}
server.setCommandHandler("LOGIN", limited("LOGIN"));
if (plugins.includes("XOAUTH2"))
    server.setCommandHandler("AUTHENTICATE XOAUTH2", limited("AUTHENTICATE XOAUTH2"));

// Every command the server is asked, one JSON line each, for tests that
// check what a client asked for: the command and its arguments as text
// (LOGIN and AUTHENTICATE without theirs).
if (config.command_log) {
    const text = (a) => Array.isArray(a) ? "(" + a.map(text).join(" ") + ")"
                      : a && typeof a === "object" ? (a.value !== undefined ? String(a.value) : "")
                      : String(a);
    const original = server.getCommandHandler.bind(server);
    server.getCommandHandler = function(command) {
        const handler = original(command);
        if (!handler)
            return handler;
        return function(connection, parsed, data, callback) {
            const name = String(parsed.command || "").toUpperCase();
            const secret = name === "LOGIN" || name.startsWith("AUTHENTICATE");
            const args = secret ? [] : (parsed.attributes || []).map(text);
            fs.appendFileSync(config.command_log, JSON.stringify({command: name, args: args}) + "\n");
            return handler(connection, parsed, data, callback);
        };
    };
}

server.server.on("listening", () => {
    process.stdout.write("LISTENING " + server.server.address().port + "\n");
});
server.listen(config.port || 0, config.host || "127.0.0.1");

process.on("SIGTERM", () => process.exit(0));
