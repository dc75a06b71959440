-- Basis for Neovim: starts `basis lsp` for code buffers and adds the skills:
--   :BasisLocalize {issue}     where would the issue be fixed (vim.ui.select, or the quickfix list)
--   :[range]BasisEdit {instr}  rewrite the lines as instructed, shown as a diff to accept or reject
--   :BasisTestgen              tests for the function under the cursor, previewed, then run in the sandbox
--   :BasisReproduce {issue}    a test that shows the issue, run in the sandbox, previewed
--   :BasisReview [intent]      review uncommitted changes: diagnostics and a YES/NO verdict
--   :BasisVerdict agree|disagree  judge the last review's verdict
--   :BasisAccept / :BasisReject  answer the preview shown last
-- The code actions "Basis: edit…" (it asks for the instruction) and "Basis:
-- generate tests for `f`" come through vim.lsp.buf.code_action(). Every choice
-- (a location opened or dismissed, a preview accepted or rejected, a review
-- comment applied or dismissed) reaches the feedback store. `:help basis`.
-- Neovim 0.11+ uses vim.lsp.config/vim.lsp.enable; 0.10 starts the client itself.
local M = {}

M.config = {
  cmd = { 'basis', 'lsp' },
  filetypes = { 'python', 'rust', 'typescript', 'typescriptreact', 'javascript', 'javascriptreact', 'go' },
  init_options = {},
  -- The position encoding offered to the server ('utf-8', 'utf-16' or
  -- 'utf-32'); nil offers what Neovim offers by default.
  offset_encoding = nil,
  -- 'select' (vim.ui.select, the choice recorded) or 'quickfix' (the list;
  -- <CR> on an entry records it).
  localize = { ui = 'select', limit = 10 },
  -- Keys in the preview window.
  preview = { accept = 'a', reject = 'r' },
}

local function root_dir(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local git = vim.fs.find('.git', { path = vim.fs.dirname(name), upward = true })[1]
  return git and vim.fs.dirname(git) or vim.fn.getcwd()
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  if M.config.offset_encoding then
    caps.general = caps.general or {}
    caps.general.positionEncodings = { M.config.offset_encoding }
  end
  return caps
end

local handlers = {
  ['basis/modelChanged'] = function(_, params)
    vim.notify(('basis: now serving %s %s'):format(params.model, params.version))
  end,
}

-- Edits being written, by their `partialToken`: {client, uri, range, title, win, buf}.
local streams = {}
local stream_count = 0
-- The last partial answer drawn: {token, lines, at} (for tests and :messages).
M.last_partial = nil

--- The basis client attached to a buffer (or any basis client).
function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = 'basis', bufnr = bufnr })
  if #clients == 0 then
    clients = vim.lsp.get_clients({ name = 'basis' })
  end
  return clients[1]
end

-- Client methods became `client:request(...)` in 0.11; 0.10 has `client.request(...)`.
local function request(client, method, params, handler, bufnr)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function notify(client, method, params)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

local function feedback(client, params)
  notify(client, 'basis/feedback', params)
end

local function current_client()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    vim.notify('basis: the language server is not running (:checkhealth basis)', vim.log.levels.ERROR)
  end
  return client, bufnr
end

--- Runs a server command; `on_done(err, result)` hears the answer.
local function execute(command, argument, on_done, client, bufnr)
  if not client then
    client, bufnr = current_client()
    if not client then
      return
    end
  end
  request(client, 'workspace/executeCommand', { command = command, arguments = { argument } }, function(err, result)
    if err then
      vim.notify(('basis: %s failed: %s'):format(command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
    if on_done then
      on_done(err, result)
    end
  end, bufnr)
end

-- ---------------------------------------------------------------- localize

local function relative(fname)
  local cwd = vim.fn.getcwd() .. '/'
  if fname:sub(1, #cwd) == cwd then
    return fname:sub(#cwd + 1)
  end
  return fname
end

local function open_location(loc)
  vim.cmd('edit ' .. vim.fn.fnameescape(vim.uri_to_fname(loc.uri)))
  local line = loc.range.start.line + 1
  pcall(vim.api.nvim_win_set_cursor, 0, { math.min(line, vim.api.nvim_buf_line_count(0)), 0 })
end

--- Asks where an issue would be fixed. With `localize.ui = 'select'` the
--- locations are offered with vim.ui.select: the one chosen is opened and
--- recorded as accepted, a dismissed list as rejected. With 'quickfix' they
--- fill the quickfix list, and <CR> on an entry records it.
function M.localize(issue, opts)
  opts = opts or {}
  local client, bufnr = current_client()
  if not client then
    return
  end
  local limit = opts.limit or M.config.localize.limit
  request(client, 'basis/localize', { query = issue, limit = limit }, function(err, result)
    if err then
      vim.notify('basis/localize failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      if opts.on_done then
        opts.on_done(nil, nil, err)
      end
      return
    end
    local id = result.suggestionId
    feedback(client, { suggestionId = id, kind = 'shown' })
    local ui = opts.ui or M.config.localize.ui
    if ui == 'quickfix' then
      local items = {}
      for _, loc in ipairs(result.locations) do
        table.insert(items, {
          filename = vim.uri_to_fname(loc.uri),
          lnum = loc.range.start.line + 1,
          col = loc.range.start.character + 1,
          text = ('%s (%.2f)'):format(loc.symbol or '', loc.score),
          user_data = { uri = loc.uri },
        })
      end
      vim.fn.setqflist({}, ' ', { title = 'basis: ' .. issue, items = items })
      vim.cmd('copen')
      vim.keymap.set('n', '<CR>', function()
        local entry = vim.fn.getqflist()[vim.fn.line('.')]
        if entry and entry.user_data and entry.user_data.uri then
          feedback(client, { suggestionId = id, kind = 'accepted', uri = entry.user_data.uri })
        end
        vim.cmd('.cc')
      end, { buffer = vim.api.nvim_get_current_buf(), desc = 'Basis: open and record this location' })
      vim.notify(('basis/localize: %d locations'):format(#items))
      if opts.on_done then
        opts.on_done(result)
      end
      return
    end
    vim.ui.select(result.locations, {
      prompt = 'Basis: where is it? ',
      kind = 'basis.localize',
      format_item = function(loc)
        local where = ('%s:%d'):format(relative(vim.uri_to_fname(loc.uri)), loc.range.start.line + 1)
        return loc.symbol and (where .. '  ' .. loc.symbol) or where
      end,
    }, function(choice)
      if choice then
        feedback(client, { suggestionId = id, kind = 'accepted', uri = choice.uri })
        open_location(choice)
      else
        feedback(client, { suggestionId = id, kind = 'rejected', reason = 'dismissed' })
      end
      if opts.on_done then
        opts.on_done(result, choice)
      end
    end)
  end, bufnr)
end

-- ---------------------------------------------------------------- preview

local diff = (vim.text and vim.text.diff) or vim.diff

-- The lines of a file as the editor has them (a loaded buffer wins over disk).
local function current_lines(uri)
  local fname = vim.uri_to_fname(uri)
  local b = vim.fn.bufnr(fname)
  if b ~= -1 and vim.api.nvim_buf_is_loaded(b) then
    return vim.api.nvim_buf_get_lines(b, 0, -1, false)
  end
  if vim.fn.filereadable(fname) == 1 then
    return vim.fn.readfile(fname)
  end
  return {}
end

-- Text edits of a WorkspaceEdit by URI (both `changes` and `documentChanges`).
local function edits_by_uri(edit)
  local out = {}
  for uri, edits in pairs(edit.changes or {}) do
    out[uri] = edits
  end
  for _, change in ipairs(edit.documentChanges or {}) do
    if change.textDocument and change.edits then
      out[change.textDocument.uri] = change.edits
    end
  end
  return out
end

--- What `edit` would make of each file: a list of {uri, old, new} (lines).
function M.proposed(edit, encoding)
  local files = {}
  for uri, edits in pairs(edits_by_uri(edit)) do
    local old = current_lines(uri)
    local scratch = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_lines(scratch, 0, -1, false, old)
    vim.lsp.util.apply_text_edits(edits, scratch, encoding)
    local new = vim.api.nvim_buf_get_lines(scratch, 0, -1, false)
    vim.api.nvim_buf_delete(scratch, { force = true })
    table.insert(files, { uri = uri, old = old, new = new })
  end
  table.sort(files, function(a, b) return a.uri < b.uri end)
  return files
end

--- A unified diff of the proposal, as lines.
function M.diff_lines(files)
  local lines = {}
  for _, f in ipairs(files) do
    local rel = relative(vim.uri_to_fname(f.uri))
    table.insert(lines, (#f.old == 0 and '--- /dev/null' or ('--- a/' .. rel)))
    table.insert(lines, '+++ b/' .. rel)
    local old = #f.old == 0 and '' or (table.concat(f.old, '\n') .. '\n')
    local text = diff(old, table.concat(f.new, '\n') .. '\n', { ctxlen = 3 })
    vim.list_extend(lines, vim.split(text, '\n', { trimempty = true }))
  end
  return lines
end

-- The preview on screen, if any: {id, client, win, buf}.
M.pending = nil

local function close_preview(p)
  if p.win and vim.api.nvim_win_is_valid(p.win) then
    vim.api.nvim_win_close(p.win, true)
  end
  if p.buf and vim.api.nvim_buf_is_valid(p.buf) then
    vim.api.nvim_buf_delete(p.buf, { force = true })
  end
end

local function answer(accepted, reason)
  local p = M.pending
  if not p then
    vim.notify('basis: no suggestion is waiting for an answer', vim.log.levels.WARN)
    return
  end
  M.pending = nil
  close_preview(p)
  if accepted then
    -- The server sends the edit as workspace/applyEdit, which Neovim applies
    -- and answers; that answer is what records the acceptance.
    execute('basis.accept', { suggestionId = p.id }, p.on_answer, p.client, p.bufnr)
  else
    execute('basis.reject', { suggestionId = p.id, reason = reason or 'dismissed' }, p.on_answer, p.client, p.bufnr)
  end
end

--- Accepts the previewed suggestion: the server applies it.
function M.accept()
  answer(true)
end

--- Rejects the previewed suggestion (recorded with `reason`, default 'dismissed').
function M.reject(reason)
  answer(false, reason)
end

-- A floating window in the middle of the editor showing `lines`.
local function open_float(lines, title, enter)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].filetype = 'diff'
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = 'wipe'
  local width = math.min(math.max(60, vim.o.columns - 10), vim.o.columns - 4)
  local height = math.max(3, math.min(#lines, vim.o.lines - 8))
  local win = vim.api.nvim_open_win(buf, enter, {
    relative = 'editor',
    row = math.floor((vim.o.lines - height) / 2) - 1,
    col = math.floor((vim.o.columns - width) / 2),
    width = width,
    height = height,
    border = 'rounded',
    title = title,
    title_pos = 'center',
  })
  return win, buf
end

-- Shows a command's proposed edit as a diff in a floating window and records
-- it as shown; the keys answer it.
local function show_preview(client, bufnr, result, title, on_answer)
  if M.pending then
    M.reject('replaced by a newer suggestion')
  end
  local files = M.proposed(result.edit, client.offset_encoding)
  local lines = M.diff_lines(files)
  if #lines == 0 then
    lines = { '(no change)' }
  end
  local keys = M.config.preview
  local win, buf = open_float(lines, (' %s: %s accept, %s reject '):format(title, keys.accept, keys.reject), true)
  M.pending = { id = result.suggestionId, client = client, bufnr = bufnr, win = win, buf = buf, files = files, on_answer = on_answer }
  local opts = { buffer = buf, nowait = true }
  vim.keymap.set('n', keys.accept, M.accept, vim.tbl_extend('force', opts, { desc = 'Basis: accept' }))
  vim.keymap.set('n', keys.reject, function() M.reject() end, vim.tbl_extend('force', opts, { desc = 'Basis: reject' }))
  vim.keymap.set('n', 'q', function() M.reject() end, vim.tbl_extend('force', opts, { desc = 'Basis: reject' }))
  -- Closing the window any other way dismisses the suggestion too.
  vim.api.nvim_create_autocmd('WinClosed', {
    pattern = tostring(win),
    once = true,
    callback = function()
      if M.pending and M.pending.win == win then
        vim.schedule(function() M.reject() end)
      end
    end,
  })
  feedback(client, { suggestionId = result.suggestionId, kind = 'shown' })
end

-- `basis/partial`: the replacement so far of an edit being written, drawn as a
-- diff in a floating window (without the focus) until the answer's preview.
handlers['basis/partial'] = function(_, params)
  local s = params and streams[params.token]
  local replacement = params and params.value and params.value.replacement
  if not s or type(replacement) ~= 'string' then
    return
  end
  local edit = { changes = { [s.uri] = { { range = s.range, newText = replacement } } } }
  local lines = M.diff_lines(M.proposed(edit, s.client.offset_encoding))
  if s.win and vim.api.nvim_win_is_valid(s.win) then
    vim.bo[s.buf].modifiable = true
    vim.api.nvim_buf_set_lines(s.buf, 0, -1, false, lines)
    vim.bo[s.buf].modifiable = false
    vim.api.nvim_win_set_height(s.win, math.max(3, math.min(#lines, vim.o.lines - 8)))
  else
    s.win, s.buf = open_float(lines, (' %s (writing…) '):format(s.title), false)
  end
  M.last_partial = { token = params.token, lines = lines, at = (vim.uv or vim.loop).now() }
end

local function end_stream(token)
  local s = token and streams[token]
  streams[token or ''] = nil
  if s and s.win and vim.api.nvim_win_is_valid(s.win) then
    vim.api.nvim_win_close(s.win, true)
  end
end

-- Runs a skill command whose answer is an edit to preview. `on_done(err,
-- result)` hears the command's answer (the preview is then on screen);
-- `on_answer(err, result)` hears the server's answer to the accept or reject.
-- `ctx` (a code action's) names the client and buffer; else the current ones.
local function offer(command, argument, title, on_done, on_answer, ctx)
  local client, bufnr
  if ctx then
    client, bufnr = vim.lsp.get_client_by_id(ctx.client_id), ctx.bufnr
  else
    client, bufnr = current_client()
  end
  if not client then
    return
  end
  argument.preview = true
  if command == 'basis.edit' and argument.range then
    -- The replacement is drawn as the model writes it.
    stream_count = stream_count + 1
    argument.partialToken = ('basis-nvim-%d'):format(stream_count)
    streams[argument.partialToken] = { client = client, uri = argument.uri, range = argument.range, title = title }
  end
  execute(command, argument, function(err, result)
    end_stream(argument.partialToken)
    if result and result.edit and result.suggestionId then
      show_preview(client, bufnr, result, title, on_answer)
    end
    if on_done then
      on_done(err, result)
    end
  end, client, bufnr)
end

-- ---------------------------------------------------------------- skills

--- Rewrites lines `first`..`last` (1-based, inclusive) of the current buffer as
--- `instruction` says; the change is previewed before anything is written.
function M.edit(instruction, first, last, on_done, on_answer)
  local uri = vim.uri_from_bufnr(0)
  local range = { start = { line = first - 1, character = 0 }, ['end'] = { line = last, character = 0 } }
  offer('basis.edit', { uri = uri, range = range, instruction = instruction }, 'Basis: edit', on_done, on_answer)
end

--- Tests for the function under the cursor, previewed; once accepted they run
--- in the sandbox and the outcome arrives as a message.
function M.testgen(on_done, on_answer)
  local client = M.client(0)
  local p = vim.lsp.util.make_position_params(0, client and client.offset_encoding or 'utf-16')
  offer('basis.testgen', { uri = p.textDocument.uri, position = p.position }, 'Basis: tests', on_done, on_answer)
end

--- A test that reproduces `issue`, run in the sandbox, then previewed.
function M.reproduce(issue, on_done, on_answer)
  offer('basis.reproduce', { issue = issue }, 'Basis: reproduction', function(err, result)
    if result then
      vim.notify('basis: ' .. result.message, result.reproduced and vim.log.levels.INFO or vim.log.levels.WARN)
    end
    if on_done then
      on_done(err, result)
    end
  end, on_answer)
end

--- Reviews the uncommitted changes (unsaved buffers included) against HEAD; the
--- comments arrive as diagnostics with quick fixes (apply, dismiss).
function M.review(intent, on_done)
  local arg = vim.empty_dict()
  if intent and intent ~= '' then
    arg = { intent = intent }
  end
  local client = current_client()
  execute('basis.review', arg, function(err, result)
    if result and result.suggestionId then
      feedback(client, { suggestionId = result.suggestionId, kind = 'shown' })
      M.last_review = { id = result.suggestionId, client = client, verdict = result.verdict }
    end
    if on_done then
      on_done(err, result)
    end
  end)
end

--- Says whether the last review's verdict was right (`agree` true or false):
--- recorded as accepted, or rejected with the reason "disagreed with the
--- verdict". A review without comments has only its verdict to judge.
function M.verdict(agree)
  local r = M.last_review
  if not r then
    vim.notify('basis: no review to judge yet (:BasisReview)', vim.log.levels.WARN)
    return
  end
  M.last_review = nil
  if agree then
    feedback(r.client, { suggestionId = r.id, kind = 'accepted' })
  else
    feedback(r.client, { suggestionId = r.id, kind = 'rejected', reason = 'disagreed with the verdict' })
  end
end

-- ---------------------------------------------------------------- setup

local function client_config()
  return {
    name = 'basis',
    cmd = M.config.cmd,
    init_options = M.config.init_options,
    capabilities = capabilities(),
    handlers = handlers,
  }
end

function M.setup(config)
  M.config = vim.tbl_deep_extend('force', M.config, config or {})
  local group = vim.api.nvim_create_augroup('basis', { clear = true })
  if vim.lsp.config and vim.lsp.enable then
    vim.lsp.config('basis', vim.tbl_extend('force', client_config(), {
      filetypes = M.config.filetypes,
      root_dir = function(bufnr, on_dir)
        on_dir(root_dir(bufnr))
      end,
    }))
    vim.lsp.enable('basis')
  else
    vim.api.nvim_create_autocmd('FileType', {
      group = group,
      pattern = M.config.filetypes,
      callback = function(args)
        vim.lsp.start(vim.tbl_extend('force', client_config(), { root_dir = root_dir(args.buf) }), { bufnr = args.buf })
      end,
    })
  end
  vim.api.nvim_create_user_command('BasisLocalize', function(args)
    M.localize(args.args)
  end, { nargs = '+', desc = 'Basis: where in this repository would the issue be fixed?' })
  vim.api.nvim_create_user_command('BasisEdit', function(args)
    M.edit(args.args, args.line1, args.line2)
  end, { nargs = '+', range = true, desc = 'Basis: rewrite these lines as instructed' })
  vim.api.nvim_create_user_command('BasisTestgen', function()
    M.testgen()
  end, { desc = 'Basis: write and run tests for the function under the cursor' })
  vim.api.nvim_create_user_command('BasisReproduce', function(args)
    M.reproduce(args.args)
  end, { nargs = '+', desc = 'Basis: write and run a test that shows the issue' })
  vim.api.nvim_create_user_command('BasisReview', function(args)
    M.review(args.args)
  end, { nargs = '*', desc = 'Basis: review the uncommitted changes' })
  vim.api.nvim_create_user_command('BasisVerdict', function(args)
    M.verdict(args.args == 'agree')
  end, {
    nargs = 1,
    complete = function() return { 'agree', 'disagree' } end,
    desc = "Basis: say whether the last review's verdict was right",
  })
  vim.api.nvim_create_user_command('BasisAccept', function()
    M.accept()
  end, { desc = 'Basis: accept the previewed suggestion' })
  vim.api.nvim_create_user_command('BasisReject', function(args)
    M.reject(args.args ~= '' and args.args or nil)
  end, { nargs = '?', desc = 'Basis: reject the previewed suggestion' })
  -- The "Basis: edit…" code action leaves the instruction to the client.
  vim.lsp.commands['basis.edit'] = function(command, ctx)
    local argument = vim.deepcopy(command.arguments[1])
    vim.ui.input({ prompt = 'Basis: edit… ' }, function(instruction)
      if not instruction or instruction == '' then
        return
      end
      argument.instruction = instruction
      offer('basis.edit', argument, 'Basis: edit', nil, nil, ctx)
    end)
  end
  -- Tests from the code action are previewed too.
  vim.lsp.commands['basis.testgen'] = function(command, ctx)
    offer('basis.testgen', vim.deepcopy(command.arguments[1]), 'Basis: tests', nil, nil, ctx)
  end
end

return M
