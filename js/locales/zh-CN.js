// Simplified Chinese texts of quota-widget, one per message, in the order of
// messages.md (the name of each is in its comment). Pass it as the messages
// option, or let <quota-widget> load it for a page whose lang is zh.
// tests/locales.rs checks the order, the count and every placeholder: the
// error lines carry {error}, the detail of what broke, as English shows it
// (the server refusing the session, for one, says to sign in again).
export default [
  "生成额度", // region_label
  "资源包", // heading_packages
  "最近的生成", // heading_attempts
  "正在等待服务器的额度数据。", // blocked_no_state
  "正在连接额度服务器。", // blocked_connecting
  "连接已断开，正在重新连接额度服务器。", // blocked_reconnecting
  "此标签页隐藏时暂停更新。", // blocked_paused
  "额度数据已过时（更新于 {age}）。", // blocked_stale
  "请选择要生成的数量。", // blocked_empty
  "此账户没有“{kind}”生成并发。", // blocked_unknown_kind
  "此请求需要 {needed} 个{kind}并发，上限为 {limit} 个。", // blocked_over_limit
  "{kind}并发已全部占用：{limit} 个中空闲 {free} 个，此请求需要 {needed} 个。", // blocked_slots
  "点数不足：此请求需要 {cost} 点，现在可用 {available} 点。", // blocked_units
  "请在 {seconds} 秒后重试：{why}。", // blocked_wait
  "排队 · 有空闲并发时开始，前面还有 {ahead} 个", // gate_queue
  "{n} 秒前", // age_seconds
  "{n} 分钟前", // age_minutes
  "{n} 小时前", // age_hours
  "剩余 {units} 点", // units_remaining
  "运行中的任务占用 {held} 点 · 现在可用 {available} 点", // units_note
  "运行中和排队中的请求占用 {held} 点 · 现在可用 {available} 点", // units_note_queued
  "{kind}生成并发", // meter_label
  "{limit} 个中已用 {in_use} 个", // meter_text
  "{limit} 个中已用 {in_use} 个，{held} 个正在提交", // meter_text_held
  "剩余 {remaining} / {total} 点", // package_units
  "已排期 · {date} 生效", // package_pending
  "即将过期，{date}", // package_expiring
  "有效 · {date} 过期", // package_active
  "已于 {date} 过期", // package_expired
  "已用完", // package_used_up
  "此请求：{cost} 点 · 每个{kind} {each} 点 · 之后剩余 {left} 点", // cost
  "此请求：{cost} 点 · 每个{kind} {each} 点 · 超过现在可用的 {available} 点", // cost_over
  "{cost} · 估算值：最终扣费可能不同", // cost_estimate
  "{kind} ×{count} · {how}", // attempt
  "{kind} ×{count} · {how} · {time}", // attempt_at
  "提交中，占用 {units} 点", // attempt_sending
  "运行中，预留 {units} 点", // attempt_running
  "排队中，第 {place} 位 · 预留 {units} 点", // attempt_queued
  "取消", // cancel_button
  "取消排队中的请求：{kind} ×{count}，第 {place} 位", // cancel_label
  "已完成，扣除 {units} 点", // attempt_done
  "被拒绝，未扣费", // attempt_refused
  "未确认，未扣费", // attempt_timed_out
  "失败，未扣费", // attempt_failed
  "{how}：{reason}", // with_reason
  "正在等待首批数据…", // fresh_waiting
  "正在重新连接…", // fresh_reconnecting
  "更新于 {age}", // fresh_manual
  "实时 · 更新于 {age}", // fresh_live
  "正在连接… · 更新于 {age}", // fresh_connecting
  "正在重新连接… · 上次更新于 {age}", // fresh_reconnecting_age
  "已暂停 · 更新于 {age}", // fresh_paused
  "{line} · 资源包数据来自服务，{age}", // fresh_packages
  "无法使用最新的额度更新：{error}。显示上次的有效数据。", // error_kept
  "无法使用服务器的额度更新：{error}。", // error_first
  "额度服务器不接受此会话（HTTP {status}）：请重新登录", // error_session
  "额度服务器对额度数据的请求返回了 HTTP {status}", // error_status
  "{kind}并发已空出：{limit} 个中可用 {free} 个。", // say_slot_free
  "点数偏低：现在可用 {available} 点。", // say_units_low
  "生成完成：扣除 {units} 点。", // say_done
  "生成失败，未扣费。", // say_failed
  "请求失败，未扣费。", // say_request_failed
  "请求被拒绝，未扣费。", // say_refused
  "服务器无响应，未扣费。", // say_no_answer
  "服务器无响应", // reason_no_answer
  "{seconds} 秒内无响应", // reason_timeout
  "请求未到达服务器", // reason_network
  "服务器错误（HTTP {status}）", // reason_server
  "无法读取服务器的响应（HTTP {status}）", // reason_not_json
  "已退出登录：请重新登录", // reason_signed_out
  "被服务器拒绝（HTTP {status}）", // reason_refused
  "账户欠费", // reason_1101
  "点数不足", // reason_1102
  "此账户无权发起此请求", // reason_1103
  "请求无效", // reason_1200
  "被内容安全策略拒绝", // reason_1301
  "请求过于频繁", // reason_1302
  "{kind}并发已全部占用", // reason_1303
  "生成服务不可用", // reason_5001
  "另一个标签页正在接管与额度服务器的连接，请稍后重试。", // tab_handover
  "持有额度服务器连接的标签页没有响应。", // tab_no_answer
  "使用此请求 ID 的提交已在进行中。", // tab_duplicate
  "图片", // kind_image
  "视频", // kind_video
];
