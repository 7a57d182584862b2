// The cross-engine suite (suite.js) in WebKitGTK, the engine of Safari,
// through WebKitWebDriver and its MiniBrowser, in a virtual display.
import { defineSuite } from "./suite.js";

defineSuite("webkit");
