// Where the quota API runs, read when the server starts (not when it is
// built), so that one build can be pointed at any quota server.
export const API_ORIGIN = process.env.QUOTA_API_ORIGIN ?? "http://127.0.0.1:8787";
