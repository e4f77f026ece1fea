// Forms whose action cannot be taken back lightly ask first: their data-confirm says what will happen.
(function () {
  "use strict";
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset ? event.target.dataset.confirm : undefined;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
