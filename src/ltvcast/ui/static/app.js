// Renders every chart whose Vega-Lite spec sits in a <script type="application/json"> beside it,
// on page load and after htmx swaps; no inline script (the Content-Security-Policy forbids it).
(function () {
  function render(root) {
    root.querySelectorAll("div.vega[data-spec]").forEach(function (el) {
      if (el.dataset.rendered) return;
      var spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
      el.dataset.rendered = "1";
      vegaEmbed(el, spec, { actions: false, renderer: "svg" }).catch(function (err) {
        el.textContent = "chart unavailable: " + err;
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { render(document); });
  document.addEventListener("htmx:afterSettle", function (ev) {
    render(ev.detail.elt);
    var heading = ev.detail.elt.querySelector("h2[tabindex='-1']");
    if (heading) heading.focus();
  });
})();
