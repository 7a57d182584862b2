import type { MessageTable } from "../quota_widget.js";

/** Simplified Chinese texts, one per message: pass it as the `messages` option. */
declare const zhCN: MessageTable;
export default zhCN;
