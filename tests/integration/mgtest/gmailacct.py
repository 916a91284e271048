"""A Gmail-shaped account for the Gmail-like test server (mgtest.hoodiecrow).

Gmail shows each label as a folder: a message is listed once in
"[Gmail]/All Mail" and once more in every folder of its labels, with the
same X-GM-MSGID everywhere. Spam and Trash hold messages All Mail does not.

    acct = GmailAccount(n=40)
    Hoodiecrow(folders=acct.folders())    # serve it
    acct.messages[msgid] -> Msg: raw bytes, labels (UTF-8), thrid, flags,
                                 internaldate, and the UID in each folder

UIDs and UIDVALIDITYs are fixed, so a server restarted with a changed
account (acct.add(...), acct.relabel(...)) serves the rest unchanged, as
Gmail does when new mail arrives or a label changes. MODSEQs (CONDSTORE)
are the account's, as Gmail's: a message gets the next one when it
arrives and when its labels change, and every folder's HIGHESTMODSEQ is
the highest given; acct.renumber(folder) gives a folder a new UIDVALIDITY
and new UIDs.
"""

import base64
import datetime

from mgtest import corpus
from mgtest.hoodiecrow import message

ALL_MAIL = "[Gmail]/All Mail"
SPAM = "[Gmail]/Spam"
TRASH = "[Gmail]/Trash"

# System label -> (folder, SPECIAL-USE attribute of the folder)
SYSTEM = {
    "\\Inbox": ("INBOX", None),
    "\\Sent": ("[Gmail]/Sent Mail", "\\Sent"),
    "\\Important": ("[Gmail]/Important", "\\Important"),
    "\\Starred": ("[Gmail]/Starred", "\\Flagged"),
}
USER = ["Work", "Work/Projects", "Reisen/Köln", "Muy Importante"]
MSGID_BASE = 1600000000000000000


def mutf7(s):
    """Modified UTF-7 (RFC 3501 5.1.3), as Gmail sends label names."""
    out, run = [], []

    def flush():
        if run:
            b = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in s:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def folder_of(label):
    return SYSTEM[label][0] if label in SYSTEM else label


class Msg:
    def __init__(self, i, raw, labels, flags):
        self.i = i
        self.msgid = MSGID_BASE + i
        self.thrid = MSGID_BASE + (i // 3) * 3
        self.raw = raw
        self.labels = list(labels)
        self.flags = list(flags)
        self.internaldate = datetime.datetime(2025, 1 + i % 12, 1 + i % 28, i % 24, 7, 9,
                                              tzinfo=datetime.timezone.utc)
        self.uids = {}  # folder -> UID there
        self.modseq = 0

    def folders(self):
        return [ALL_MAIL] + [folder_of(label) for label in self.labels]


def default_labels(i):
    labels = []
    for label, every, at in [("\\Inbox", 2, 0), ("\\Sent", 5, 1), ("\\Important", 3, 0),
                             ("\\Starred", 7, 0), ("Work", 4, 1), ("Work/Projects", 8, 1),
                             ("Reisen/Köln", 6, 2), ("Muy Importante", 9, 4)]:
        if i % every == at:
            labels.append(label)
    return labels


class GmailAccount:
    def __init__(self, n=40, seed=7, spam=3, trash=2, ascii_names=False):
        """ascii_names: user labels without non-ASCII letters, for clients
        that cannot take the raw UTF-8 folder names the test server lists."""
        self.seed = seed
        self.rename = {"Reisen/Köln": "Reisen/Koeln"} if ascii_names else {}
        self.messages = {}
        self.next_uid = {}
        self.modseq = 0  # the highest MODSEQ given
        self.uidvalidity = {}  # folder -> UIDVALIDITY, when not the default
        self.outside = {SPAM: [], TRASH: []}  # raw messages All Mail does not hold
        for i in range(n):
            self.add(i)
        for k in range(spam):
            self.outside[SPAM].append(corpus.build_message(seed + 1000, k)[0])
        for k in range(trash):
            self.outside[TRASH].append(corpus.build_message(seed + 2000, k)[0])

    def add(self, i, labels=None):
        """Message i arrives with its labels (default_labels(i) if None)."""
        raw = corpus.build_message(self.seed, i)[0]
        labels = default_labels(i) if labels is None else labels
        labels = [self.rename.get(x, x) for x in labels]
        flags = ["\\Seen"] if i % 3 else []
        if "\\Starred" in labels:
            flags.append("\\Flagged")
        m = Msg(i, raw, labels, flags)
        for f in m.folders():
            m.uids[f] = self._uid(f)
        self._touch(m)
        self.messages[m.msgid] = m
        return m

    def _uid(self, folder):
        uid = self.next_uid.get(folder, 1)
        self.next_uid[folder] = uid + 1
        return uid

    def _touch(self, m):
        self.modseq += 1
        m.modseq = self.modseq

    def renumber(self, folder):
        """The server renumbers folder: a new UIDVALIDITY, new UIDs."""
        self.uidvalidity[folder] = self.uidvalidity.get(folder, 1000 + len(folder)) + 1
        self.next_uid[folder] = 1
        for _, m in self.listing(folder):
            m.uids[folder] = self._uid(folder)

    def flag(self, msgid, add=(), remove=()):
        """Flags set or cleared elsewhere (the same in every folder)."""
        m = self.messages[msgid]
        self._touch(m)
        m.flags = [f for f in m.flags if f not in remove] + [f for f in add if f not in m.flags]

    def relabel(self, msgid, add=(), remove=()):
        """Labels added get a new UID in their folder; removed ones leave it."""
        m = self.messages[msgid]
        self._touch(m)
        for label in remove:
            m.labels.remove(label)
            del m.uids[folder_of(label)]
        for label in add:
            m.labels.append(label)
            m.uids[folder_of(label)] = self._uid(folder_of(label))

    def folder_names(self):
        names = {ALL_MAIL, SPAM, TRASH} | {s[0] for s in SYSTEM.values()}
        names |= {self.rename.get(x, x) for x in USER}
        return sorted(names)

    def listing(self, folder):
        """[(uid, Msg)] the server lists in folder."""
        return sorted((m.uids[folder], m) for m in self.messages.values() if folder in m.uids)

    def folders(self):
        """The description Hoodiecrow(folders=...) serves."""
        out = {}
        for name in self.folder_names():
            f = {"uidvalidity": self.uidvalidity.get(name, 1000 + len(name)),
                 "highestmodseq": max(self.modseq, 1), "messages": []}
            special = {ALL_MAIL: "\\All", SPAM: "\\Junk", TRASH: "\\Trash"}.get(name)
            special = special or next((s[1] for s in SYSTEM.values() if s[0] == name), None)
            if special:
                f["special_use"] = special
            if name in self.outside:
                f["messages"] = [message(raw, uid=k + 1) for k, raw in
                                 enumerate(self.outside[name])]
            for uid, m in self.listing(name):
                f["messages"].append(message(
                    m.raw, uid=uid, flags=m.flags, labels=[mutf7(x) for x in m.labels],
                    msgid=str(m.msgid), thrid=str(m.thrid), modseq=m.modseq,
                    internaldate=m.internaldate.strftime("%Y-%m-%dT%H:%M:%SZ")))
            if f["messages"]:
                f["uidnext"] = max(x["uid"] for x in f["messages"]) + 1
            out[name] = f
        return out

    def unique_bytes(self):
        return sum(len(m.raw) for m in self.messages.values())
