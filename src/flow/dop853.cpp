#include "flow/dop853.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace eomlab {
namespace {

// Butcher tableau of DOP853 with the three extra stages of its dense output (rows 13..15).
constexpr double C[16] = {0.0,
                          0.526001519587677318785587544488e-01,
                          0.789002279381515978178381316732e-01,
                          0.118350341907227396726757197510,
                          0.281649658092772603273242802490,
                          0.333333333333333333333333333333,
                          0.25,
                          0.307692307692307692307692307692,
                          0.651282051282051282051282051282,
                          0.6,
                          0.857142857142857142857142857142,
                          1.0,
                          1.0,
                          0.1,
                          0.2,
                          0.777777777777777777777777777778};

struct Tableau {
  double a[16][16] = {};
  double b[12] = {};
  double e3[13] = {};
  double e5[13] = {};
  double d[4][16] = {};

  constexpr Tableau() {
    a[1][0] = 5.26001519587677318785587544488e-2;
    a[2][0] = 1.97250569845378994544595329183e-2;
    a[2][1] = 5.91751709536136983633785987549e-2;
    a[3][0] = 2.95875854768068491816892993775e-2;
    a[3][2] = 8.87627564304205475450678981324e-2;
    a[4][0] = 2.41365134159266685502369798665e-1;
    a[4][2] = -8.84549479328286085344864962717e-1;
    a[4][3] = 9.24834003261792003115737966543e-1;
    a[5][0] = 3.7037037037037037037037037037e-2;
    a[5][3] = 1.70828608729473871279604482173e-1;
    a[5][4] = 1.25467687566822425016691814123e-1;
    a[6][0] = 3.7109375e-2;
    a[6][3] = 1.70252211019544039314978060272e-1;
    a[6][4] = 6.02165389804559606850219397283e-2;
    a[6][5] = -1.7578125e-2;
    a[7][0] = 3.70920001185047927108779319836e-2;
    a[7][3] = 1.70383925712239993810214054705e-1;
    a[7][4] = 1.07262030446373284651809199168e-1;
    a[7][5] = -1.53194377486244017527936158236e-2;
    a[7][6] = 8.27378916381402288758473766002e-3;
    a[8][0] = 6.24110958716075717114429577812e-1;
    a[8][3] = -3.36089262944694129406857109825;
    a[8][4] = -8.68219346841726006818189891453e-1;
    a[8][5] = 2.75920996994467083049415600797e1;
    a[8][6] = 2.01540675504778934086186788979e1;
    a[8][7] = -4.34898841810699588477366255144e1;
    a[9][0] = 4.77662536438264365890433908527e-1;
    a[9][3] = -2.48811461997166764192642586468;
    a[9][4] = -5.90290826836842996371446475743e-1;
    a[9][5] = 2.12300514481811942347288949897e1;
    a[9][6] = 1.52792336328824235832596922938e1;
    a[9][7] = -3.32882109689848629194453265587e1;
    a[9][8] = -2.03312017085086261358222928593e-2;
    a[10][0] = -9.3714243008598732571704021658e-1;
    a[10][3] = 5.18637242884406370830023853209;
    a[10][4] = 1.09143734899672957818500254654;
    a[10][5] = -8.14978701074692612513997267357;
    a[10][6] = -1.85200656599969598641566180701e1;
    a[10][7] = 2.27394870993505042818970056734e1;
    a[10][8] = 2.49360555267965238987089396762;
    a[10][9] = -3.0467644718982195003823669022;
    a[11][0] = 2.27331014751653820792359768449;
    a[11][3] = -1.05344954667372501984066689879e1;
    a[11][4] = -2.00087205822486249909675718444;
    a[11][5] = -1.79589318631187989172765950534e1;
    a[11][6] = 2.79488845294199600508499808837e1;
    a[11][7] = -2.85899827713502369474065508674;
    a[11][8] = -8.87285693353062954433549289258;
    a[11][9] = 1.23605671757943030647266201528e1;
    a[11][10] = 6.43392746015763530355970484046e-1;
    a[12][0] = 5.42937341165687622380535766363e-2;
    a[12][5] = 4.45031289275240888144113950566;
    a[12][6] = 1.89151789931450038304281599044;
    a[12][7] = -5.8012039600105847814672114227;
    a[12][8] = 3.1116436695781989440891606237e-1;
    a[12][9] = -1.52160949662516078556178806805e-1;
    a[12][10] = 2.01365400804030348374776537501e-1;
    a[12][11] = 4.47106157277725905176885569043e-2;
    a[13][0] = 5.61675022830479523392909219681e-2;
    a[13][6] = 2.53500210216624811088794765333e-1;
    a[13][7] = -2.46239037470802489917441475441e-1;
    a[13][8] = -1.24191423263816360469010140626e-1;
    a[13][9] = 1.5329179827876569731206322685e-1;
    a[13][10] = 8.20105229563468988491666602057e-3;
    a[13][11] = 7.56789766054569976138603589584e-3;
    a[13][12] = -8.298e-3;
    a[14][0] = 3.18346481635021405060768473261e-2;
    a[14][5] = 2.83009096723667755288322961402e-2;
    a[14][6] = 5.35419883074385676223797384372e-2;
    a[14][7] = -5.49237485713909884646569340306e-2;
    a[14][10] = -1.08347328697249322858509316994e-4;
    a[14][11] = 3.82571090835658412954920192323e-4;
    a[14][12] = -3.40465008687404560802977114492e-4;
    a[14][13] = 1.41312443674632500278074618366e-1;
    a[15][0] = -4.28896301583791923408573538692e-1;
    a[15][5] = -4.69762141536116384314449447206;
    a[15][6] = 7.68342119606259904184240953878;
    a[15][7] = 4.06898981839711007970213554331;
    a[15][8] = 3.56727187455281109270669543021e-1;
    a[15][12] = -1.39902416515901462129418009734e-3;
    a[15][13] = 2.9475147891527723389556272149;
    a[15][14] = -9.15095847217987001081870187138;

    for (int j = 0; j < 12; ++j) b[j] = a[12][j];
    for (int j = 0; j < 12; ++j) e3[j] = b[j];
    e3[0] -= 0.244094488188976377952755905512;
    e3[8] -= 0.733846688281611857341361741547;
    e3[11] -= 0.220588235294117647058823529412e-1;

    e5[0] = 0.1312004499419488073250102996e-1;
    e5[5] = -0.1225156446376204440720569753e1;
    e5[6] = -0.4957589496572501915214079952;
    e5[7] = 0.1664377182454986536961530415e1;
    e5[8] = -0.3503288487499736816886487290;
    e5[9] = 0.3341791187130174790297318841;
    e5[10] = 0.8192320648511571246570742613e-1;
    e5[11] = -0.2235530786388629525884427845e-1;

    d[0][0] = -0.84289382761090128651353491142e1;
    d[0][5] = 0.56671495351937776962531783590;
    d[0][6] = -0.30689499459498916912797304727e1;
    d[0][7] = 0.23846676565120698287728149680e1;
    d[0][8] = 0.21170345824450282767155149946e1;
    d[0][9] = -0.87139158377797299206789907490;
    d[0][10] = 0.22404374302607882758541771650e1;
    d[0][11] = 0.63157877876946881815570249290;
    d[0][12] = -0.88990336451333310820698117400e-1;
    d[0][13] = 0.18148505520854727256656404962e2;
    d[0][14] = -0.91946323924783554000451984436e1;
    d[0][15] = -0.44360363875948939664310572000e1;
    d[1][0] = 0.10427508642579134603413151009e2;
    d[1][5] = 0.24228349177525818288430175319e3;
    d[1][6] = 0.16520045171727028198505394887e3;
    d[1][7] = -0.37454675472269020279518312152e3;
    d[1][8] = -0.22113666853125306036270938578e2;
    d[1][9] = 0.77334326684722638389603898808e1;
    d[1][10] = -0.30674084731089398182061213626e2;
    d[1][11] = -0.93321305264302278729567221706e1;
    d[1][12] = 0.15697238121770843886131091075e2;
    d[1][13] = -0.31139403219565177677282850411e2;
    d[1][14] = -0.93529243588444783865713862664e1;
    d[1][15] = 0.35816841486394083752465898540e2;
    d[2][0] = 0.19985053242002433820987653617e2;
    d[2][5] = -0.38703730874935176555105901742e3;
    d[2][6] = -0.18917813819516756882830838328e3;
    d[2][7] = 0.52780815920542364900561016686e3;
    d[2][8] = -0.11573902539959630126141871134e2;
    d[2][9] = 0.68812326946963000169666922661e1;
    d[2][10] = -0.10006050966910838403183860980e1;
    d[2][11] = 0.77771377980534432092869265740;
    d[2][12] = -0.27782057523535084065932004339e1;
    d[2][13] = -0.60196695231264120758267380846e2;
    d[2][14] = 0.84320405506677161018159903784e2;
    d[2][15] = 0.11992291136182789328035130030e2;
    d[3][0] = -0.25693933462703749003312586129e2;
    d[3][5] = -0.15418974869023643374053993627e3;
    d[3][6] = -0.23152937917604549567536039109e3;
    d[3][7] = 0.35763911791061412378285349910e3;
    d[3][8] = 0.93405324183624310003907691704e2;
    d[3][9] = -0.37458323136451633156875139351e2;
    d[3][10] = 0.10409964950896230045147246184e3;
    d[3][11] = 0.29840293426660503123344363579e2;
    d[3][12] = -0.43533456590011143754432175058e2;
    d[3][13] = 0.96324553959188282948394950600e2;
    d[3][14] = -0.39177261675615439165231486172e2;
    d[3][15] = -0.14972683625798562581422125276e3;
  }
};

constexpr Tableau tableau{};

constexpr double safety = 0.9, min_factor = 0.2, max_factor = 10.0;
constexpr double error_exponent = -1.0 / 8.0;

// The smallest step taken at time t: ten units of rounding of t (at least of 1).
double min_step(double t) { return 10 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(t)); }

// Σ (v / scale)², a term being 0 where v is 0: a component that is zero and has a zero scale (atol = 0 at
// a parameter that stays 0, as a bias before batchnorm) neither errs nor measures anything. The plain
// vectorized sum first, so results are those of the sum without that rule wherever it is a number.
template <class V, class S>
double scaled_square_sum(const V& v, const S& scale) {
  const double sum = (v / scale).square().sum();
  return std::isnan(sum) ? (v == 0.0).select(0.0, v / scale).square().sum() : sum;
}

// out = base + h * Σ_{j<count} coef[j] k[j], skipping zero coefficients.
template <class Stages>
void combine(Vector& out, const Vector& base, double h, const double* coef, int count, const Stages& k) {
  out = base;
  for (int j = 0; j < count; ++j)
    if (coef[j] != 0.0) out.noalias() += (h * coef[j]) * k[static_cast<std::size_t>(j)];
}

}  // namespace

Dop853::Dop853(Field field, IntegratorSettings tol, const Reducer& vector_reducer, Index global_size)
    : field_(std::move(field)), tol_(tol), reducer_(vector_reducer), global_size_(static_cast<double>(global_size)) {
  if (!(tol.rtol > 0) || !(tol.atol >= 0)) throw Error("Dop853: expected rtol > 0 and atol >= 0");
}

double Dop853::rms_scaled(const Vector& v, const Vector& y) const {
  const double local = scaled_square_sum(v.array(), tol_.atol + tol_.rtol * y.array().abs());
  return std::sqrt(reducer_.sum(local) / global_size_);
}

void Dop853::start(double t0, const Vector& y0) {
  t_ = t_old_ = t0;
  y_ = y0;
  status_ = Status::ok;
  dense_ready_ = false;
  last_rejected_ = false;
  accepted_ = rejected_ = 0;
  for (auto& k : k_) k.resize(y0.size());
  field_(y_, k_[0]);
  h_ = initial_step();
  h_old_ = 0;
}

double Dop853::initial_step() {
  const double d0 = rms_scaled(y_, y_);
  const double d1 = rms_scaled(k_[0], y_);
  const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  stage_ = y_ + h0 * k_[0];
  field_(stage_, k_[1]);
  const double d2 = rms_scaled(k_[1] - k_[0], y_) / h0;
  const double dmax = std::max(d1, d2);
  const double h1 = dmax <= 1e-15 ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / dmax, 1.0 / 8.0);
  // Not below the smallest step: a component starting at 0 under a tiny or zero atol makes d1 huge, and
  // the first steps grow by up to max_factor each from there.
  const double h = std::min(100 * h0, h1);
  return h >= min_step(t_) ? h : min_step(t_);
}

double Dop853::error_norm(double h) {
  err5_.setZero(y_.size());
  err3_.setZero(y_.size());
  for (int j = 0; j < 13; ++j) {
    if (tableau.e5[j] != 0.0) err5_.noalias() += tableau.e5[j] * k_[static_cast<std::size_t>(j)];
    if (tableau.e3[j] != 0.0) err3_.noalias() += tableau.e3[j] * k_[static_cast<std::size_t>(j)];
  }
  const auto scale = tol_.atol + tol_.rtol * y_.array().abs().max(y_new_.array().abs());
  double sums[2] = {scaled_square_sum(err5_.array(), scale), scaled_square_sum(err3_.array(), scale)};
  reducer_.sum_in_place(sums, 2);
  const double denom = sums[0] + 0.01 * sums[1];
  if (denom == 0.0) return 0.0;
  return std::abs(h) * sums[0] / std::sqrt(denom * global_size_);
}

void Dop853::take_step() {
  const double smallest = min_step(t_);
  for (;;) {
    if (tol_.max_steps > 0 && accepted_ + rejected_ >= tol_.max_steps) {
      status_ = Status::step_limit;
      return;
    }
    if (!(h_ >= smallest)) {
      status_ = Status::step_size_underflow;
      return;
    }
    // Land exactly on the end time rather than step past it.
    const bool last = t_ < t_end_ && t_ + h_ >= t_end_;
    const double h = last ? t_end_ - t_ : h_;
    for (int s = 1; s < n_stages; ++s) {
      combine(stage_, y_, h, tableau.a[s], s, k_);
      field_(stage_, k_[static_cast<std::size_t>(s)]);
    }
    combine(y_new_, y_, h, tableau.b, n_stages, k_);
    field_(y_new_, k_[12]);
    const double err = error_norm(h);
    if (!std::isfinite(err)) {
      if (!y_new_.allFinite() && h < smallest * 1e3) {
        status_ = Status::not_finite;
        return;
      }
      ++rejected_;
      last_rejected_ = true;
      h_ = h * min_factor;
      continue;
    }
    if (err < 1.0) {
      double factor = err == 0.0 ? max_factor : std::min(max_factor, safety * std::pow(err, error_exponent));
      if (last_rejected_) factor = std::min(1.0, factor);
      ++accepted_;
      last_rejected_ = false;
      t_old_ = t_;
      t_ = last ? t_end_ : t_ + h;
      h_old_ = h;
      y_old_.swap(y_);
      y_.swap(y_new_);
      dense_ready_ = false;
      // The FSAL stage becomes the first stage of the next step; keep f(y_old) for the dense output.
      std::swap(k_[0], k_[12]);
      h_ = h * factor;
      return;
    }
    ++rejected_;
    last_rejected_ = true;
    h_ = h * std::max(min_factor, safety * std::pow(err, error_exponent));
  }
}

void Dop853::prepare_dense_output() {
  // After take_step: k_[0] = f(y), k_[12] = f(y_old); stages 1..11 belong to the last step.
  std::swap(k_[0], k_[12]);  // restore the step's own stage order
  const double h = h_old_;
  for (int s = 13; s < n_stages_dense; ++s) {
    combine(stage_, y_old_, h, tableau.a[s], s, k_);
    field_(stage_, k_[static_cast<std::size_t>(s)]);
  }
  const Vector& f_old = k_[0];
  const Vector& f_new = k_[12];
  dense_[0] = y_ - y_old_;
  dense_[1] = h * f_old - dense_[0];
  dense_[2] = 2.0 * dense_[0] - h * (f_new + f_old);
  for (int i = 0; i < 4; ++i) {
    Vector& f = dense_[static_cast<std::size_t>(3 + i)];
    f.setZero(y_.size());
    for (int j = 0; j < n_stages_dense; ++j)
      if (tableau.d[i][j] != 0.0) f.noalias() += (h * tableau.d[i][j]) * k_[static_cast<std::size_t>(j)];
  }
  std::swap(k_[0], k_[12]);
  dense_ready_ = true;
}

void Dop853::dense_output(double t, Vector& y) const {
  const double x = (t - t_old_) / h_old_;
  y = dense_[6];
  for (int i = 5; i >= 0; --i) {
    y *= (i % 2 == 0) ? (1.0 - x) : x;  // factors alternate x, 1-x, ... from the innermost term
    y += dense_[static_cast<std::size_t>(i)];
  }
  y *= x;
  y += y_old_;
}

Dop853::State Dop853::export_state() const {
  State s;
  s.scalars = {t_, t_old_, h_, h_old_, dense_ready_ ? 1.0 : 0.0, last_rejected_ ? 1.0 : 0.0,
               static_cast<double>(accepted_), static_cast<double>(rejected_), static_cast<double>(status_)};
  const Index n = y_.size();
  auto padded = [n](const Vector& v) { return v.size() == n ? v : Vector::Zero(n).eval(); };
  s.vectors.push_back(y_);
  s.vectors.push_back(padded(y_old_));
  for (const Vector& k : k_) s.vectors.push_back(padded(k));
  for (const Vector& d : dense_) s.vectors.push_back(padded(d));
  return s;
}

void Dop853::import_state(const State& s) {
  if (s.scalars.size() != 9 || s.vectors.size() != 2 + k_.size() + dense_.size())
    throw Error("Dop853::import_state: malformed state");
  t_ = s.scalars[0];
  t_old_ = s.scalars[1];
  h_ = s.scalars[2];
  h_old_ = s.scalars[3];
  dense_ready_ = s.scalars[4] != 0.0;
  last_rejected_ = s.scalars[5] != 0.0;
  accepted_ = static_cast<long>(s.scalars[6]);
  rejected_ = static_cast<long>(s.scalars[7]);
  status_ = static_cast<Status>(static_cast<int>(s.scalars[8]));
  std::size_t i = 0;
  y_ = s.vectors[i++];
  y_old_ = s.vectors[i++];
  for (Vector& k : k_) k = s.vectors[i++];
  for (Vector& d : dense_) d = s.vectors[i++];
}

void Dop853::field_changed() {
  if (status_ != Status::ok) return;
  t_old_ = t_;
  y_old_ = y_;
  field_(y_, k_[0]);
  dense_ready_ = false;
  last_rejected_ = false;
}

Dop853::Status Dop853::advance_to(double t, Vector& y, const std::function<bool()>& interrupt) {
  if (status_ != Status::ok) return status_;
  while (t_ < t) {
    if (interrupt && interrupt()) return Status::interrupted;
    take_step();
    if (status_ != Status::ok) return status_;
  }
  if (t == t_) {
    y = y_;
  } else {
    if (!dense_ready_) prepare_dense_output();
    dense_output(t, y);
  }
  return status_;
}

}  // namespace eomlab
