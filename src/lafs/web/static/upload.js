// Upload forms (class "upload") send their file with XMLHttpRequest so the page can show a
// progress bar while the browser sends it; without JavaScript the same form posts as usual.
// Served from /static only: the gateway's pages run no inline script.
(function () {
  "use strict";

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / (1024 * 1024)).toFixed(1) + " MiB";
  }

  function showAnswer(xhr, form) {
    var target = new URL(form.action, document.baseURI).href;
    if (xhr.responseURL && xhr.responseURL !== target) {
      // The gateway redirected (when_done=): go there, as the plain form would have.
      window.location.assign(xhr.responseURL);
      return;
    }
    // The answer itself (the upload results, or an error page): show it in place of this page.
    document.open();
    document.write(xhr.responseText);
    document.close();
  }

  function send(form, event) {
    var input = form.querySelector('input[type="file"]');
    if (!input || !input.files || input.files.length === 0 || !window.FormData) {
      return; // nothing chosen: let the plain form post, so the gateway explains the problem
    }
    event.preventDefault();
    var area = form.querySelector(".progress-area") || form;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.className = "upload-progress";
    var label = document.createElement("span");
    label.className = "upload-progress-label";
    area.textContent = "";
    area.appendChild(bar);
    area.appendChild(label);
    var buttons = form.querySelectorAll("button, input[type=submit]");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;

    var xhr = new XMLHttpRequest();
    xhr.open(form.method || "POST", form.action);
    xhr.setRequestHeader("Accept", "text/html");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((e.loaded / e.total) * 100);
        label.textContent = " " + formatBytes(e.loaded) + " of " + formatBytes(e.total);
      }
    });
    xhr.upload.addEventListener("load", function () {
      bar.value = 100;
      label.textContent = " sent; the gateway is encoding and storing it\u2026";
    });
    xhr.addEventListener("load", function () { showAnswer(xhr, form); });
    xhr.addEventListener("error", function () {
      label.textContent = " the upload failed: the gateway could not be reached";
      for (var i = 0; i < buttons.length; i++) buttons[i].disabled = false;
    });
    xhr.send(new FormData(form));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var forms = document.querySelectorAll("form.upload");
    for (var i = 0; i < forms.length; i++) {
      (function (form) {
        form.addEventListener("submit", function (event) { send(form, event); });
      })(forms[i]);
    }
  });
})();
