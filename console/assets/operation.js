// Follows a running operation's log: the page holds every line up to data-last; the stream
// sends what came after and then each new line, and ends with the operation's result.
"use strict";
(function () {
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  if (!log || log.dataset.status !== "running") return;
  const source = new EventSource(log.dataset.events + "?after=" + encodeURIComponent(log.dataset.last));
  source.onmessage = function (event) {
    const item = document.createElement("li");
    item.dataset.seq = event.lastEventId;
    item.textContent = event.data;
    log.appendChild(item);
  };
  source.addEventListener("end", function (event) {
    source.close();
    status.textContent = event.data;
    status.className = event.data;
  });
})();
