#!/usr/bin/env python3
"""Mail checks for the system suite (test/system/run.sh), run on the host against the container's
Letterbox (the container shares the host's network, so its ports are on 127.0.0.1).

  mail.py mx TO TOKEN                      send a message to port 25 (no auth), as outside.test would
  mail.py submit USER PASS TO TOKEN        send over 587 with STARTTLS and AUTH
  mail.py imap-wait USER PASS TOKEN [S]    exit 0 once a message holding TOKEN is in USER's INBOX (993)
  mail.py imap-count USER PASS             print the number of messages in INBOX
  mail.py imap-login USER PASS             exit 0 when the login works
  mail.py api KEY METHOD PATH [JSON]       call the management API (127.0.0.1:8025/api/v1); prints STATUS BODY
The certificate is the installation's self-signed one: not verified here (the suite checks the
service, not the PKI)."""
import imaplib
import urllib.error
import urllib.request
import smtplib
import ssl
import sys
import time

HOST = '127.0.0.1'


def tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(frm, to, token):
    return (f'From: <{frm}>\r\nTo: <{to}>\r\nSubject: system test {token}\r\n'
            f'Message-ID: <{token}@outside.test>\r\n\r\nbody {token}\r\n')


def main(argv):
    cmd = argv[0]
    if cmd == 'mx':
        to, token = argv[1:3]
        with smtplib.SMTP(HOST, 25, local_hostname='client.outside.test', timeout=30) as s:
            s.sendmail('sender@outside.test', [to], message('sender@outside.test', to, token))
        return 0
    if cmd == 'api':
        key, method, path = argv[1:4]
        body = argv[4].encode() if len(argv) > 4 else None
        req = urllib.request.Request('http://127.0.0.1:8025/api/v1' + path, data=body, method=method,
                                     headers={'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                print(r.status, r.read().decode())
        except urllib.error.HTTPError as e:
            print(e.code, e.read().decode())
        return 0
    if cmd == 'submit':
        user, pw, to, token = argv[1:5]
        with smtplib.SMTP(HOST, 587, local_hostname='client.outside.test', timeout=30) as s:
            s.starttls(context=tls())
            s.login(user, pw)
            s.sendmail(user, [to], message(user, to, token))
        return 0
    if cmd in ('imap-wait', 'imap-count', 'imap-login'):
        user, pw = argv[1:3]
        deadline = time.time() + (float(argv[4]) if cmd == 'imap-wait' and len(argv) > 4 else 30)
        while True:
            try:
                with imaplib.IMAP4_SSL(HOST, 993, ssl_context=tls(), timeout=30) as m:
                    m.login(user, pw)
                    if cmd == 'imap-login':
                        return 0
                    typ, data = m.select('INBOX', readonly=True)
                    if cmd == 'imap-count':
                        print(int(data[0]))
                        return 0
                    typ, found = m.search(None, 'BODY', argv[3])
                    if found[0].split():
                        return 0
            except (imaplib.IMAP4.error, OSError) as e:
                if cmd != 'imap-wait':
                    print(f'imap: {e}', file=sys.stderr)
                    return 1
            if time.time() > deadline:
                print(f'imap: no message with {argv[3]} in {user} INBOX', file=sys.stderr)
                return 1
            time.sleep(1)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
