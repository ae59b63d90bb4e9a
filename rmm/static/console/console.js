// Relative times ("3 min ago") that stay fresh while a page is open, with the exact time in the browser's time zone
// on hover. The server renders <time class="ago" datetime="ISO 8601"> with the same words (rmm/console.py), so the
// page reads the same without this script.
(function () {
  "use strict";

  var UNITS = [
    [86400 * 365, "year"], [86400 * 30, "month"], [86400 * 7, "week"], [86400, "day"], [3600, "h"], [60, "min"],
  ];

  function ago(seconds) {
    var future = seconds < 0;
    var s = Math.abs(seconds);
    var words = "just now";
    for (var i = 0; i < UNITS.length; i++) {
      var n = Math.floor(s / UNITS[i][0]);
      if (n >= 1) {
        var unit = UNITS[i][1];
        var plural = n > 1 && unit !== "h" && unit !== "min" ? "s" : "";
        words = n + " " + unit + plural;
        return future ? "in " + words : words + " ago";
      }
    }
    return s < 60 && s >= 1 ? (future ? "in " + Math.floor(s) + " s" : Math.floor(s) + " s ago") : words;
  }

  function refresh() {
    var now = Date.now();
    document.querySelectorAll("time.ago[datetime]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      el.textContent = ago(Math.round((now - at) / 1000));
      if (!el.dataset.localised) {
        el.title = new Date(at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "long" });
        el.dataset.localised = "1";
      }
    });
  }

  window.rmmConsole = { refreshTimes: refresh };
  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    setInterval(refresh, 30000);
  });
})();
