// The cross-engine suite (suite.js) in Debian's Firefox ESR, through geckodriver.
import { defineSuite } from "./suite.js";

defineSuite("firefox");
