/* Paperboy: time zone prefill and auto-submitting one-button forms. No dependencies. */
(function () {
  "use strict";

  /* Pick the browser's time zone in <select data-detect-timezone>, if we offer it. */
  function detectTimezone() {
    var select = document.querySelector("select[data-detect-timezone]");
    var zone;
    if (!select) return;
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (error) {
      return;
    }
    if (!zone || zone === select.value) return;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) {
        select.value = zone;
        var hint = document.querySelector("[data-timezone-hint]");
        if (hint) hint.hidden = false;
        return;
      }
    }
  }

  /* Submit <form data-autosubmit> once the page is really in front of someone.
     The button stays for people without JavaScript; mail scanners only GET. */
  function autoSubmit() {
    var form = document.querySelector("form[data-autosubmit]");
    if (!form) return;
    function submit() {
      if (form.dataset.submitted) return;
      form.dataset.submitted = "true";
      var button = form.querySelector("[type=submit]");
      if (button) {
        if (button.dataset.busyLabel) button.textContent = button.dataset.busyLabel;
        button.disabled = true;
      }
      form.submit();
    }
    function whenVisible() {
      if (document.visibilityState === "visible") {
        document.removeEventListener("visibilitychange", whenVisible);
        window.setTimeout(submit, 400);
      }
    }
    document.addEventListener("visibilitychange", whenVisible);
    whenVisible();
  }

  detectTimezone();
  autoSubmit();
})();
