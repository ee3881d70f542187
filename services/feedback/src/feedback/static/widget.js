/* koe survey widget: upgrades the survey form of the embed snippet in place
   (README, "Embedding the survey"). Without this script the form still posts
   and comes back with a thank-you; with it, answers go as JSON and the
   thank-you appears without leaving the page. It must never break the host
   page: every entry point catches everything, and any failure leaves either
   the plain form or a polite message. No cookies, no storage, no requests
   except to koe, and none at all until the citizen touches the form: koe
   must not learn of every page view.
   koe's JSON API wants a proof of work for the page (ALTCHA's protocol,
   README "Spam and abuse"): on first touch the script fetches a challenge and
   finds its number with crypto.subtle, in slices of a few milliseconds, so
   the page answers every key press while it works. Without crypto.subtle
   (a page on plain http) the plain form is left as it is.
   The snippet is made in one language and carries that language's messages
   (data-koe-texts). One made with data-koe-lang="page" follows the page's
   <html lang>: only then, and only for a language other than the snippet's,
   the script fetches that language's words (/i18n/<locale>.json, the same
   file for every page) and relabels the form. */
(function () {
  "use strict";
  // The catalogue's locales (koe_directory.catalogue.LOCALES), easy Japanese before
  // Japanese so that its longer tag is matched first.
  var LOCALES = ["ja-x-easy", "ja", "en", "pt", "es", "zh-Hans", "ko", "vi", "fil"];
  var FETCH = { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" };
  var TOUCH = ["focusin", "pointerdown", "change"];
  // Work this long, then let the page handle input: a key press waits at most this.
  var SLICE_MS = 8, BATCH = 512;

  function later() {
    return new Promise(function (go) { setTimeout(go, 0); });
  }

  function solve(c) {
    // The number n (0..maxnumber) whose SHA-256 of salt + n is the challenge;
    // the answer as ALTCHA's widget sends it: base64 of the solution's JSON.
    var target = [], n = 0, encoder = new TextEncoder(), i;
    for (i = 0; i < 64; i += 2) target.push(parseInt(c.challenge.slice(i, i + 2), 16));
    function hit(digest) {
      var b = new Uint8Array(digest);
      for (var j = 0; j < 32; j++) if (b[j] !== target[j]) return false;
      return true;
    }
    function batch(began) {
      var first = n, jobs = [];
      for (; jobs.length < BATCH && n <= c.maxnumber; n++) {
        jobs.push(crypto.subtle.digest("SHA-256", encoder.encode(c.salt + n)));
      }
      if (!jobs.length) throw new Error("no solution");
      return Promise.all(jobs).then(function (digests) {
        for (var k = 0; k < digests.length; k++) if (hit(digests[k])) return first + k;
        if (performance.now() - began < SLICE_MS) return batch(began);
        return later().then(function () { return batch(performance.now()); });
      });
    }
    return batch(performance.now()).then(function (number) {
      return btoa(JSON.stringify({
        algorithm: c.algorithm, challenge: c.challenge, number: number,
        salt: c.salt, signature: c.signature
      }));
    });
  }

  function uuid() {
    // crypto.randomUUID needs a secure context; city pages may still be plain http.
    var b = crypto.getRandomValues(new Uint8Array(16)), h = [], i;
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    for (i = 0; i < 16; i++) h.push((b[i] + 256).toString(16).slice(1));
    h = h.join("");
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
  }

  function supported(tag) {
    // A BCP 47 tag to the catalogue's locale for it, or null: zh-TW and zh-CN both
    // read simplified Chinese here, tl is Filipino's older code.
    tag = (tag || "").toLowerCase();
    if (/^ja-.*easy/.test(tag)) return "ja-x-easy";
    if (/^zh(-|$)/.test(tag)) return "zh-Hans";
    if (/^tl(-|$)/.test(tag)) return "fil";
    for (var i = 0; i < LOCALES.length; i++) {
      var code = LOCALES[i].toLowerCase();
      if (tag === code || tag.indexOf(code + "-") === 0) return LOCALES[i];
    }
    return null;
  }

  function wanted(root) {
    var asked = root.getAttribute("data-koe-lang");
    if (asked === "page") return supported(document.documentElement.lang) || "ja";
    return supported(asked || root.lang) || "ja";
  }

  function relabel(root, form, t) {
    // The snippet's words replaced by `t`'s (/i18n/<locale>.json): text only, so the
    // form, its names and values stay the snippet's.
    var i, sets = form.querySelectorAll("fieldset"), parts = {
      ".koe-h": t.heading, ".koe-done": t.thanks, ".koe-b": t.submit
    };
    root.lang = t.locale;
    root.dir = t.dir;
    Object.keys(parts).forEach(function (selector) {
      var node = root.querySelector(selector);
      if (node) node.textContent = parts[selector];
    });
    for (i = 0; i < sets.length; i++) {
      var radios = sets[i].querySelectorAll("input[type=radio]"), words = radios.length && t.questions[radios[0].name];
      if (!words) continue;
      sets[i].querySelector("legend").textContent = words[0];
      for (var j = 0; j < radios.length && j < 3; j++) radios[j].parentNode.lastChild.nodeValue = " " + words[j + 1];
    }
    if (form.elements.locale) form.elements.locale.value = t.locale;
  }

  function value(form, name) {
    var field = form.elements[name];
    return field && field.value ? field.value : null;
  }

  function title(root) {
    // By characters, not UTF-16 units: half an emoji is not text koe can store.
    var text = (root.getAttribute("data-koe-title") || document.title || "").trim();
    return Array.from(text).slice(0, 200).join("") || null;
  }

  function pageUrl(form) {
    // A canonical on another origin (http for https, www or none) names a site koe
    // may not serve, and every answer would be refused; the form's own field is
    // what the plain form sends.
    var link = document.querySelector('link[rel="canonical"]');
    var given = value(form, "page_url") || "";
    var url = link && link.href.indexOf(location.origin + "/") === 0 ? link.href
      : /^https?:\/\//.test(given) ? given : location.href;
    return url.split("#")[0];
  }

  function upgrade(root) {
    var form = root.querySelector("form.koe-form");
    if (!form || root.hasAttribute("data-koe-ready")) return;
    // Next to the form's .../feedback, so koe behind a path prefix (/koe/) keeps it.
    var api = new URL("api/v1/feedback", form.action).href;
    var message = root.querySelector(".koe-msg");
    var thanks = root.querySelector(".koe-done");
    var button = root.querySelector(".koe-b");
    var shown = supported(root.lang) || "ja", want = wanted(root);
    var given = root.getAttribute("data-koe-texts"), text = given ? JSON.parse(given) : {};
    // 送信中… is said politely, apart from the errors' alert, and made before it is
    // needed: a live region added with its text is not announced.
    var status = document.createElement("p");
    status.className = "koe-st";
    status.setAttribute("role", "status");
    button.parentNode.insertBefore(status, button);
    if (want !== shown || !given) {
      fetch(new URL("i18n/" + want + ".json", form.action).href, { credentials: "omit", referrerPolicy: "no-referrer" })
        .then(function (r) { if (!r.ok) throw new Error("i18n " + r.status); return r.json(); })
        .then(function (t) { relabel(root, form, t); text = t; shown = t.locale; })
        .catch(function () { /* the snippet's own words stay */ });
    }
    var token = uuid();
    var proof = null, sending = false, frame = 0;

    function work() {
      // The solved challenge for this page, as a promise; a failure (koe down) is
      // asked for again at the next submit.
      var query = "/challenge?page_url=" + encodeURIComponent(pageUrl(form));
      var pending = (proof = fetch(api + query, FETCH)
        .then(function (r) {
          if (!r.ok) throw new Error("challenge " + r.status);
          return r.json();
        })
        .then(solve));
      pending.catch(function () {
        if (proof === pending) proof = null;
      });
      return pending;
    }

    function working() {
      // False when the host page broke fetch: the plain form then posts instead.
      try {
        if (!proof) work();
        return true;
      } catch (e) {
        form.removeEventListener("submit", submit);
        root.removeAttribute("data-koe-ready");
        return false;
      }
    }

    function touched() {
      // The work starts while the citizen reads the questions, not when they send.
      TOUCH.forEach(function (type) { form.removeEventListener(type, touched); });
      working();
    }

    function say(words) {
      // Emptied, then filled on the next frame: the same words twice are then
      // two changes, and a screen reader announces each press.
      cancelAnimationFrame(frame);
      message.textContent = "";
      if (words) frame = requestAnimationFrame(function () { message.textContent = words; });
    }

    function busy(on) {
      // While the answer travels (a slow network can take seconds): the button says so
      // and ignores presses; it keeps its focus, which disabling it would drop.
      if (!text.sending) return;  // an old snippet whose words have not come yet
      status.textContent = on ? text.sending : "";
      button.textContent = on ? text.sending : text.submit;
      if (on) button.setAttribute("aria-disabled", "true");
      else button.removeAttribute("aria-disabled");
    }

    function payload() {
      // The form's radio groups are the survey's questions (the snippet is made from
      // koe_directory.survey), so the script needs no list of its own.
      var answers = {}, body, i, modified, checked = form.querySelectorAll('input[type="radio"]:checked');
      for (i = 0; i < checked.length; i++) answers[checked[i].name] = checked[i].value;
      body = {
        page_url: pageUrl(form),
        page_title: title(root),
        division: root.getAttribute("data-koe-division") || value(form, "division"),
        locale: shown,
        answers: answers,
        client_token: token
      };
      // A CMS id counts only with the CMS's signature (README, "Embedding the survey").
      body.page_id = root.getAttribute("data-koe-page-id") || value(form, "page_id");
      body.page_sig = root.getAttribute("data-koe-page-sig") || value(form, "page_sig");
      // The page's last-modified date (README, "Did my edit help?"); a template that left
      // its tag unfilled must not cost the citizen the answer, so only a real date goes.
      modified = root.getAttribute("data-koe-modified") || value(form, "page_modified");
      if (/^\d{4}-\d{2}-\d{2}$/.test(modified || "")) body.page_modified = modified;
      if (value(form, "homepage")) body.homepage = value(form, "homepage");
      return body;
    }

    function send() {
      var body = payload();
      if (!Object.keys(body.answers).length) {
        say(text.empty);
        form.querySelector("input.koe-r").focus();
        return Promise.resolve();
      }
      sending = true;
      say("");
      busy(true);
      function post(solution) {
        // The same proof again after a lost answer is a retry: koe gives the first id.
        body.altcha = solution;
        return fetch(api, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
          credentials: FETCH.credentials,
          referrerPolicy: FETCH.referrerPolicy
        });
      }
      return (proof || work())
        .then(post)
        .then(function (r) {
          // 403: the proof expired or was spent; one more, once.
          return r.status === 403 ? work().then(post) : r;
        })
        .then(function (r) {
          if (r.status === 202) {
            form.hidden = true;
            // The attribute too: without widget.css (a host's CSP) the class shows nothing.
            thanks.hidden = false;
            thanks.classList.add("koe-on");
            thanks.focus();
            return;
          }
          say(r.status === 429 ? text.busy : r.status >= 500 ? text.down : text.bad);
        });
    }

    function submit(event) {
      if (!working()) return;
      try {
        event.preventDefault();
        if (sending) return;
        send()
          .catch(function () { say(text.down); })
          .then(function () { sending = false; busy(false); });
      } catch (e) {
        sending = false;
        busy(false);
        say(text.down);
      }
    }

    function answered() {
      // "Please answer" is wrong once an answer is chosen: it goes, other errors stay.
      if (message.textContent === text.empty) say("");
    }

    TOUCH.forEach(function (type) { form.addEventListener(type, touched); });
    form.addEventListener("submit", submit);
    form.addEventListener("change", answered);
    root.setAttribute("data-koe-ready", "");
  }

  function start() {
    var roots = document.querySelectorAll(".koe-w"), i;
    for (i = 0; i < roots.length; i++) {
      try {
        upgrade(roots[i]);
      } catch (e) {
        // The plain form keeps working.
      }
    }
  }

  try {
    if (window.fetch && window.URL && window.Promise && window.crypto && crypto.subtle) {
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
      else start();
    }
  } catch (e) {
    // Leave the page and the plain form as they are.
  }
})();
