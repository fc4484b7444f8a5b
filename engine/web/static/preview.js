// Tidings preview: live reload over server-sent events, tabs, and submit-on-change for the pickers.
// No framework and no build step: the pages work without it (the pickers have a Show button).
(function () {
  "use strict";
  var body = document.body;

  // Live reload. The page knows the version it was rendered at; the stream's hello tells the
  // current one, so a save between page load and connect still reloads, as does a server restart.
  var live = document.getElementById("live");
  if (window.EventSource && body.dataset.version) {
    var source = new EventSource("/events");
    source.addEventListener("hello", function (event) {
      if (live) { live.className = "on"; live.textContent = "live"; }
      if (JSON.parse(event.data).version !== body.dataset.version) { location.reload(); }
    });
    source.addEventListener("change", function () { location.reload(); });
    source.onerror = function () { if (live) { live.className = "off"; live.textContent = "reconnecting"; } };
  }

  // Tabs: the selected one is kept in the URL's hash, so a live reload keeps it.
  var tabs = Array.prototype.slice.call(document.querySelectorAll("[role=tab]"));
  function select(name) {
    tabs.forEach(function (tab) {
      var on = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      var panel = document.getElementById("panel-" + tab.dataset.tab);
      if (panel) { panel.hidden = !on; }
    });
  }
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () {
      select(tab.dataset.tab);
      history.replaceState(null, "", "#" + tab.dataset.tab);
    });
  });
  if (tabs.length) {
    var wanted = location.hash.slice(1);
    select(tabs.some(function (t) { return t.dataset.tab === wanted; }) ? wanted : tabs[0].dataset.tab);
  }

  // Pickers submit as soon as they change (the form is a GET: the URL holds the whole state).
  Array.prototype.forEach.call(document.querySelectorAll("form.controls [data-autosubmit]"), function (input) {
    input.addEventListener("change", function () { input.form.requestSubmit ? input.form.requestSubmit() : input.form.submit(); });
  });
})();
