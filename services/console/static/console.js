// The console's one script: every htmx request carries the page's CSRF token in a header
// (Flask-WTF reads X-CSRFToken). Pages work without JavaScript; htmx only adds partial updates.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRFToken"] = meta.getAttribute("content");
  }
});
