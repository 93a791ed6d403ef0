#!/usr/bin/python3
# Independent ARC chain validation with Debian's python3-dkim (dkimpy's arc_verify).
# Usage: arcverify.py MESSAGE_FILE RECORDS_JSON   (RECORDS_JSON: {"sel._domainkey.d": "v=DKIM1; ..."})
# Prints {"cv": "pass"|"fail"|"none", "comment": ...}. DNS answers come from RECORDS_JSON only.
import json, sys
import dkim

msg = open(sys.argv[1], 'rb').read()
records = json.load(open(sys.argv[2]))

def dnsfunc(name, timeout=5):
    n = (name.decode() if isinstance(name, bytes) else name).rstrip('.').lower()
    v = records.get(n)
    return v.encode() if v else None

cv, results, comment = dkim.arc_verify(msg, dnsfunc=dnsfunc)
print(json.dumps({'cv': cv.decode() if isinstance(cv, bytes) else cv, 'comment': comment, 'instances': len(results)}))
