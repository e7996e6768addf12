// Live updates: the server sends the fleet's section again, rendered,
// whenever ZooKeeper reports a change. Without JavaScript the page is the
// same, as of its load.
"use strict";
(function () {
  var live = document.getElementById("live");
  var fleet = document.getElementById("fleet");
  if (!window.EventSource || !live || !fleet) return;
  var es = new EventSource("events");
  es.addEventListener("fleet", function (e) {
    fleet.innerHTML = e.data; // rendered and escaped by the server
    live.textContent = "live";
    live.className = "live on";
  });
  es.onerror = function () {
    live.textContent = "reconnecting…";
    live.className = "live";
  };
})();
