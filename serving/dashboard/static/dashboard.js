// Draws each chart from the JSON the server put beside it; binds the print button. Nothing else.
// `html[data-ready]` is set once every chart's newPlot has finished drawing (its promise).
(function () {
  "use strict";
  function draw() {
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
    var drawn = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-chart"));
      if (!source || !window.Plotly) { return; }
      var spec = JSON.parse(source.textContent);
      drawn.push(window.Plotly.newPlot(el, spec.data, spec.layout,
        {displaylogo: false, responsive: true, showLink: false, showSendToCloud: false,
         modeBarButtonsToRemove: ["sendDataToCloud"]}));
    });
    Promise.all(drawn).then(function () {
      document.documentElement.setAttribute("data-ready", String(Math.round(performance.now())));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else { draw(); }
})();
