// The demo's theme picker. "System" follows prefers-color-scheme; "Light"
// and "Dark" set data-theme on <html>, which both the page's stylesheet and
// the widget's read. The choice is kept in localStorage. Loaded before
// main.js, so that a kept choice applies before the dashboard shows.
const KEY = "qw-demo-theme";
const root = document.documentElement;

function apply(theme) {
  if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  else delete root.dataset.theme;
}

function saved() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null; // storage blocked: follow the system
  }
}

apply(saved());
const picker = document.querySelector("#theme");
if (picker) {
  picker.value = root.dataset.theme ?? "";
  picker.addEventListener("change", () => {
    apply(picker.value);
    try {
      localStorage.setItem(KEY, picker.value);
    } catch {
      // Not kept; applied for this page anyway.
    }
  });
}
