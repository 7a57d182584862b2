// A page that goes wrong in the three ways the watch (watch.js) must hear:
// the suite's first test opens it, so that "no console error" cannot pass
// because nothing was listening. (Page code: an error thrown by a script
// that WebDriver runs is not the page's in every engine.)
setTimeout(() => {
  throw new Error("xbrowser probe");
});
console.error("xbrowser probe via console.error");
Promise.reject(new Error("xbrowser probe rejected"));
