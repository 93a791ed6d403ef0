#!/usr/bin/python3
# Independent DKIM verification with Debian's python3-dkim (dkimpy), every signature of a message.
# Usage: dkimverify.py MESSAGE_FILE RECORDS_JSON   (RECORDS_JSON: {"sel._domainkey.d": "v=DKIM1; ..."})
# DNS answers come from RECORDS_JSON (the test's zone), so nothing leaves the machine.
import json, re, sys
import dkim

msg = open(sys.argv[1], 'rb').read()
records = json.load(open(sys.argv[2]))

def dnsfunc(name, timeout=5):
    n = (name.decode() if isinstance(name, bytes) else name).rstrip('.').lower()
    v = records.get(n)
    return v.encode() if v else None

head = re.split(rb'\r?\n\r?\n', msg, 1)[0]
unfolded = re.sub(rb'\r?\n[ \t]+', b' ', head)
sigs = [l for l in unfolded.split(b'\n') if l.lower().startswith(b'dkim-signature:')]
out = []
for i, s in enumerate(sigs):
    tags = dict((m.group(1).decode(), m.group(2).decode().strip()) for m in re.finditer(rb'([a-z]+)=([^;]*)', s.split(b':', 1)[1]))
    d = dkim.DKIM(msg)
    try:
        ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
    except Exception as e:
        ok = False
    out.append({'idx': i, 'a': tags.get('a'), 'd': tags.get('d'), 's': tags.get('s'), 'h': tags.get('h'), 'ok': ok})
print(json.dumps(out))
