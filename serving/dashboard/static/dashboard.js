// Draws each chart from the JSON the server put beside it; binds the print button. Nothing else.
(function () {
  "use strict";
  function draw() {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-chart"));
      if (!source || !window.Plotly) { return; }
      var spec = JSON.parse(source.textContent);
      window.Plotly.newPlot(el, spec.data, spec.layout,
        {displaylogo: false, responsive: true, showLink: false, showSendToCloud: false,
         modeBarButtonsToRemove: ["sendDataToCloud"]});
    });
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
    document.documentElement.setAttribute("data-ready", String(Math.round(performance.now())));
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else { draw(); }
})();
