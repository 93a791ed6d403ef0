// Letterbox console: passkey registration and sign-in (with the @simplewebauthn/browser bundle,
// served by the console itself as /console/static/webauthn.js) and the copy buttons. No inline
// script anywhere: the Content-Security-Policy allows only scripts from this server.
'use strict';
(function () {
  function show(id, message) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
  }

  async function postJson(url, body) {
    var res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body), credentials: 'same-origin' });
    var data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) throw new Error((data && data.error && data.error.message) || ('the server answered ' + res.status));
    return data;
  }

  function webauthnError(err) {
    if (err && err.name === 'NotAllowedError') return 'The browser did not use a passkey (cancelled or timed out). Try again.';
    return (err && err.message) || String(err);
  }

  async function register(button) {
    button.disabled = true;
    try {
      var token = button.getAttribute('data-token');
      var options = await postJson('/console/invite/options', { token: token });
      var response = await SimpleWebAuthnBrowser.startRegistration({ optionsJSON: options });
      var done = await postJson('/console/invite/verify', { token: token, response: response });
      window.location.assign(done.next);
    } catch (err) {
      show('register-error', webauthnError(err));
      button.disabled = false;
    }
  }

  async function login(button) {
    button.disabled = true;
    try {
      var options = await postJson('/console/login/options', {});
      var response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options });
      var done = await postJson('/console/login/verify', { response: response, next: button.getAttribute('data-next') });
      window.location.assign(done.next);
    } catch (err) {
      show('login-error', webauthnError(err));
      button.disabled = false;
    }
  }

  // The button keeps its name ("Copy"); the result is announced beside it (a live region).
  async function copy(button) {
    var text = button.getAttribute('data-copy') || '';
    var note = document.createElement('span');
    note.className = 'copied';
    note.setAttribute('role', 'status');
    try {
      await navigator.clipboard.writeText(text);
      note.textContent = 'Copied';
    } catch (e) {
      note.textContent = 'Copy failed: select the text';
    }
    var old = button.parentNode.querySelector('.copied');
    if (old) old.remove();
    button.after(note);
    setTimeout(function () { note.remove(); }, 2000);
  }

  document.addEventListener('click', function (ev) {
    var t = ev.target;
    if (!(t instanceof Element)) return;
    var b = t.closest('button');
    if (!b) return;
    if (b.id === 'passkey-register') register(b);
    else if (b.id === 'passkey-login') login(b);
    else if (b.classList.contains('copy')) copy(b);
  });
})();
