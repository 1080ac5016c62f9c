// Words of the pages in Chinese (the default) and English. Elements name their text with
// data-i18n="key" (textContent) or data-i18n-placeholder / data-i18n-aria (attributes); code
// calls t("key", {var: value}). The choice is kept on the phone (localStorage).

const WORDS = {
  "zh-CN": {
    "app.title": "一卡通钱包",
    "lang.switch": "English",
    "tab.pay": "付款码",
    "tab.scan": "扫一扫",
    "tab.history": "账单",
    "balance": "余额",
    "yuan": "元",
    "identity.student": "学生",
    "identity.staff": "教职工",
    "identity.temporary": "临时人员",
    "identity.external": "校外人员",
    "status.frozen": "已挂失",
    "pay.hint": "请向收银员出示付款码，每个码只能使用一次。",
    "pay.meta": "剩余 {n} 个码 · {time} 前有效",
    "pay.refresh": "刷新付款码",
    "codes.frozen": "这张卡已挂失（冻结），不能付款。如已找回，请到一卡通服务中心解除挂失。",
    "codes.offline_none": "当前离线，手机上没有可用的付款码。请连接网络后再试。",
    "codes.expired": "付款码已过期。请连接网络获取新的付款码。",
    "codes.loading": "正在获取付款码…",
    "codes.failed": "暂时无法获取付款码：{why}",
    "codes.superseded": "付款码已在其他设备上更新，已换成新的付款码。",
    "offline": "当前离线：付款码仍可使用，结果会在联网后显示。",
    "signed_out.title": "请登录",
    "signed_out.text": "请打开一卡通服务中心发给你的登录链接（每个链接只能用一次）。",
    "signout": "退出登录",
    "signed_out.done": "已退出登录。",
    "scan.title": "扫描商户二维码",
    "scan.starting": "正在打开相机…",
    "scan.aim": "将商户二维码放入框内",
    "scan.no_camera": "无法使用相机（需要 HTTPS 并允许访问相机）。可以从相册选择二维码照片。",
    "scan.denied": "没有相机权限。请在浏览器设置中允许，或从相册选择照片。",
    "scan.photo": "从相册选择",
    "scan.again": "重新扫描",
    "scan.not_found": "照片中没有找到二维码，请换一张更清晰的照片。",
    "scan.reading": "正在识别…",
    "order.title": "确认付款",
    "order.merchant": "商户",
    "order.terminal": "收银台",
    "order.amount": "金额",
    "order.amount_placeholder": "输入金额",
    "order.fee": "搭伙费",
    "order.fee_rate": "搭伙费（{rate}）",
    "order.total": "合计",
    "order.pay": "确认付款",
    "order.cancel": "取消",
    "order.bad_amount": "请输入 0.01 至 100000.00 元之间的金额（最多两位小数）。",
    "order.low_balance": "余额不足以支付合计金额。",
    "order.processing": "正在处理…",
    "order.waiting": "已提交，正在等待结果…",
    "pin.title": "请输入支付密码",
    "pin.for": "{merchant} · 合计 {total} 元",
    "pin.clear": "删除",
    "pin.cancel": "取消",
    "pin.wrong": "支付密码错误。",
    "pin.wrong_left": "支付密码错误，还可以尝试 {n} 次。",
    "pin.locked": "支付密码已锁定，{until} 后可重试，或到一卡通服务中心解锁。",
    "confirm.title": "确认这笔付款",
    "confirm.text": "{merchant} 正在向你收款，请输入支付密码确认。",
    "confirm.decline": "拒绝",
    "confirm.left": "{s} 秒内确认",
    "confirm.timeout": "确认已超时，这笔付款已取消。",
    "confirm.gone": "这笔付款已不需要确认。",
    "confirm.sent": "已确认，正在付款…",
    "result.approved": "支付成功",
    "result.declined": "支付失败",
    "result.reversed": "已退款",
    "result.pending": "等待确认",
    "result.processing": "处理中",
    "result.merchant": "商户",
    "result.amount": "金额",
    "result.fee": "搭伙费",
    "result.total": "合计",
    "result.balance_after": "支付后余额",
    "result.done": "完成",
    "history.title": "最近交易",
    "history.refunds": "退款",
    "history.empty": "还没有交易。",
    "history.reverse": "付款码",
    "history.forward": "扫码付",
    "history.refund": "退款",
    "state.created": "处理中",
    "state.approved": "成功",
    "state.declined": "失败",
    "state.reversed": "已撤销",
    "state.voided": "已作废",
    "state.awaiting_confirmation": "待确认",
    "reason.invalid_message": "收银台发送的信息有误，请收银员重试。",
    "reason.unauthorized": "收银台未通过验证，请联系商户。",
    "reason.unknown_code": "付款码无效，请刷新后重新出示。",
    "reason.code_used": "这个付款码已经用过了，请出示新的付款码。",
    "reason.code_expired": "付款码已过期，请刷新付款码。",
    "reason.code_revoked": "付款码已作废（已更新或已挂失），请刷新付款码。",
    "reason.card_frozen": "卡已挂失（冻结），不能付款。",
    "reason.insufficient_balance": "余额不足，请先充值。",
    "reason.limit_exceeded": "超出单笔或当日消费限额。",
    "reason.unknown_merchant": "商户未登记。",
    "reason.unknown_terminal": "收银台未登记。",
    "reason.invalid_amount": "金额无效。",
    "reason.qr_expired": "商户二维码已过期，请让收银员重新生成。",
    "reason.qr_used": "这个商户二维码已经被使用过了。",
    "reason.voided": "这笔交易已被收银台撤销，没有扣款。",
    "reason.rate_limited": "收银台请求过于频繁，请稍后再试。",
    "reason.pin_required": "金额超过免密额度，需要输入支付密码。",
    "reason.pin_locked": "支付密码已锁定。",
    "reason.reversal_window_closed": "已超过可撤销的时间。",
    "reason.internal_error": "系统出错，没有扣款，请重试。",
    "reason.user_confirming": "等待你在手机上确认。",
    "reason.confirmation_timeout": "没有及时确认，这笔付款已取消。",
    "reason.user_declined": "你拒绝了这笔付款。",
    "error.network": "无法连接服务器，请检查网络。",
    "error.unauthorized": "登录已失效，请重新打开登录链接。",
    "error.invalid_qr": "这不是校园商户的付款二维码。",
    "error.unknown_merchant": "商户未登记。",
    "error.unknown_terminal": "收银台未登记。",
    "error.qr_expired": "商户二维码已过期，请让收银员重新生成。",
    "error.qr_used": "这个商户二维码已经被使用过了。",
    "error.card_frozen": "卡已挂失（冻结），不能付款。",
    "error.no_card": "没有找到你的一卡通。",
    "error.amount_required": "请输入金额。",
    "error.invalid_amount": "金额无效。",
    "error.amount_mismatch": "金额与二维码不一致。",
    "error.already_submitted": "这笔订单已经提交过了。",
    "error.not_found": "没有找到。",
    "error.unavailable": "服务暂时不可用，请稍后再试。",
    "error.csrf_refused": "请求被拒绝，请刷新页面。",
    "error.other": "出错了：{why}",
  },
  en: {
    "app.title": "Campus card wallet",
    "lang.switch": "中文",
    "tab.pay": "Pay code",
    "tab.scan": "Scan",
    "tab.history": "History",
    "balance": "Balance",
    "yuan": "yuan",
    "identity.student": "Student",
    "identity.staff": "Staff",
    "identity.temporary": "Temporary",
    "identity.external": "External",
    "status.frozen": "Frozen",
    "pay.hint": "Show this code to the cashier. Each code works once.",
    "pay.meta": "{n} codes left · valid until {time}",
    "pay.refresh": "New codes",
    "codes.frozen": "This card is reported lost (frozen) and cannot pay. If you found it, ask the card office to unfreeze it.",
    "codes.offline_none": "You are offline and this phone holds no usable payment code. Connect to the network and try again.",
    "codes.expired": "The payment codes have expired. Connect to the network to get new ones.",
    "codes.loading": "Getting payment codes…",
    "codes.failed": "Cannot get payment codes right now: {why}",
    "codes.superseded": "Your codes were renewed on another device; this phone now shows new ones.",
    "offline": "Offline: the payment code still works; results show once you are back online.",
    "signed_out.title": "Please sign in",
    "signed_out.text": "Open the sign-in link the card office sent you (each link works once).",
    "signout": "Sign out",
    "signed_out.done": "You are signed out.",
    "scan.title": "Scan the merchant's QR code",
    "scan.starting": "Opening the camera…",
    "scan.aim": "Hold the merchant's QR code inside the frame",
    "scan.no_camera": "The camera is not available (it needs HTTPS and your permission). You can pick a photo of the QR code instead.",
    "scan.denied": "No permission to use the camera. Allow it in the browser's settings, or pick a photo.",
    "scan.photo": "Pick a photo",
    "scan.again": "Scan again",
    "scan.not_found": "No QR code found in that photo; try a sharper one.",
    "scan.reading": "Reading…",
    "order.title": "Confirm payment",
    "order.merchant": "Merchant",
    "order.terminal": "Till",
    "order.amount": "Amount",
    "order.amount_placeholder": "Enter the amount",
    "order.fee": "Surcharge",
    "order.fee_rate": "Surcharge ({rate})",
    "order.total": "Total",
    "order.pay": "Pay",
    "order.cancel": "Cancel",
    "order.bad_amount": "Enter an amount from 0.01 to 100000.00 yuan (at most two decimals).",
    "order.low_balance": "The balance does not cover the total.",
    "order.processing": "Processing…",
    "order.waiting": "Sent; waiting for the result…",
    "pin.title": "Enter your payment PIN",
    "pin.for": "{merchant} · total {total} yuan",
    "pin.clear": "Delete",
    "pin.cancel": "Cancel",
    "pin.wrong": "Wrong PIN.",
    "pin.wrong_left": "Wrong PIN; {n} more tries.",
    "pin.locked": "The PIN is locked until {until}, or ask the card office to unlock it.",
    "confirm.title": "Confirm this payment",
    "confirm.text": "{merchant} is charging you. Enter your PIN to confirm.",
    "confirm.decline": "Decline",
    "confirm.left": "Confirm within {s} s",
    "confirm.timeout": "Not confirmed in time; the payment was cancelled.",
    "confirm.gone": "This payment no longer needs your confirmation.",
    "confirm.sent": "Confirmed; paying…",
    "result.approved": "Payment approved",
    "result.declined": "Payment declined",
    "result.reversed": "Refunded",
    "result.pending": "Waiting for confirmation",
    "result.processing": "Processing",
    "result.merchant": "Merchant",
    "result.amount": "Amount",
    "result.fee": "Surcharge",
    "result.total": "Total",
    "result.balance_after": "Balance after",
    "result.done": "Done",
    "history.title": "Recent payments",
    "history.refunds": "Refunds",
    "history.empty": "No payments yet.",
    "history.reverse": "Pay code",
    "history.forward": "Scan",
    "history.refund": "Refund",
    "state.created": "Processing",
    "state.approved": "Approved",
    "state.declined": "Declined",
    "state.reversed": "Reversed",
    "state.voided": "Voided",
    "state.awaiting_confirmation": "To confirm",
    "reason.invalid_message": "The till sent a malformed request; the cashier should try again.",
    "reason.unauthorized": "The till could not be verified; tell the merchant.",
    "reason.unknown_code": "The payment code is not valid; refresh and show it again.",
    "reason.code_used": "This payment code was already used; show a new one.",
    "reason.code_expired": "The payment code expired; refresh your codes.",
    "reason.code_revoked": "The payment code was withdrawn (renewed or card frozen); refresh your codes.",
    "reason.card_frozen": "The card is reported lost (frozen) and cannot pay.",
    "reason.insufficient_balance": "Not enough balance; top up first.",
    "reason.limit_exceeded": "Over the card's per-payment or daily limit.",
    "reason.unknown_merchant": "The merchant is not registered.",
    "reason.unknown_terminal": "The till is not registered.",
    "reason.invalid_amount": "The amount is not valid.",
    "reason.qr_expired": "The merchant's QR code expired; ask the cashier for a new one.",
    "reason.qr_used": "This merchant QR code was already used.",
    "reason.voided": "The till cancelled this payment; nothing was charged.",
    "reason.rate_limited": "The till sent too many requests; try again shortly.",
    "reason.pin_required": "Above the password-free amount: the payment PIN is needed.",
    "reason.pin_locked": "The payment PIN is locked.",
    "reason.reversal_window_closed": "Too late to cancel this payment.",
    "reason.internal_error": "The system failed; nothing was charged. Try again.",
    "reason.user_confirming": "Waiting for you to confirm on the phone.",
    "reason.confirmation_timeout": "Not confirmed in time; the payment was cancelled.",
    "reason.user_declined": "You declined this payment.",
    "error.network": "Cannot reach the server; check the network.",
    "error.unauthorized": "You are signed out; open a new sign-in link.",
    "error.invalid_qr": "This is not a campus merchant's payment QR code.",
    "error.unknown_merchant": "The merchant is not registered.",
    "error.unknown_terminal": "The till is not registered.",
    "error.qr_expired": "The merchant's QR code expired; ask the cashier for a new one.",
    "error.qr_used": "This merchant QR code was already used.",
    "error.card_frozen": "The card is reported lost (frozen) and cannot pay.",
    "error.no_card": "No campus card found for you.",
    "error.amount_required": "Enter the amount.",
    "error.invalid_amount": "The amount is not valid.",
    "error.amount_mismatch": "The amount differs from the QR code's.",
    "error.already_submitted": "This order was already sent.",
    "error.not_found": "Not found.",
    "error.unavailable": "The service is unavailable; try again shortly.",
    "error.csrf_refused": "The request was refused; reload the page.",
    "error.other": "Something went wrong: {why}",
  },
};

const KEY = "campuspay.lang";
let current = localStorage.getItem(KEY) === "en" ? "en" : "zh-CN";

export function lang() {
  return current;
}

export function t(key, vars) {
  const s = WORDS[current][key] ?? WORDS["zh-CN"][key] ?? key;
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : s;
}

// A page's own words, added to the shared ones (the till's web/pos/words.js, the console's
// web/console/words.js).
export function addWords(more) {
  for (const l of Object.keys(more)) {
    if (WORDS[l]) Object.assign(WORDS[l], more[l]);
  }
}

// Whether a key has words (a reason or an error code the pages know).
export function has(key) {
  return key in WORDS["zh-CN"];
}

// The words for a decline reason; an unknown one shows its code.
export function reason(code) {
  return has("reason." + code) ? t("reason." + code) : code;
}

// The words for an API error (src/platform/error.rs codes).
export function errorText(err) {
  if (err && err.offline) return t("error.network");
  const code = err && err.code;
  if (code && has("error." + code)) return t("error." + code);
  return t("error.other", { why: (err && err.message) || String(err) });
}

export function apply(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-aria]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAria));
  }
}

export function setLang(l) {
  current = l === "en" ? "en" : "zh-CN";
  localStorage.setItem(KEY, current);
  apply();
}

// A time as the phone's locale writes it (hours and minutes).
export function clock(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString(current, { hour: "2-digit", minute: "2-digit" });
}

export function dateTime(iso) {
  const d = new Date(iso);
  return d.toLocaleString(current, {
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
}
